//! Result records and the writers that put them into JSONL or CSV, in input order.

pub mod dates;
pub mod record;
pub mod results;
pub mod writer;

pub use record::Record;
pub use writer::{csv_row, open_writer, OutputFormat, RecordWriter, CSV_HEADER};
