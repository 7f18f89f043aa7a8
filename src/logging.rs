//! Messages on stderr: `docclass: …` lines for people, or with `--log-format json` one
//! JSON object per line (`time` in seconds since 1970, `level`, `event`, `message`, and
//! the event's fields) for log collectors of schedulers.

use std::io::IsTerminal;
use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

pub fn set_format(format: LogFormat) {
    FORMAT.set(format).ok();
}

pub fn is_json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

fn emit(level: &str, event: &str, message: &str, fields: Value) {
    if is_json() {
        let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut line =
            json!({"time": (time * 1000.0).round() / 1000.0, "level": level, "event": event, "message": message});
        if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        eprintln!("{line}");
    } else if level == "info" {
        eprintln!("docclass: {message}");
    } else {
        eprintln!("docclass: {level}: {message}");
    }
}

pub fn info(event: &str, message: &str, fields: Value) {
    emit("info", event, message, fields);
}

pub fn warning(event: &str, message: &str, fields: Value) {
    emit("warning", event, message, fields);
}

pub fn error(message: &str) {
    emit("error", "error", message, Value::Null);
}

/// A progress bar of `len` steps drawn with `template`, or a hidden one where it would
/// only garble the output: stderr not a terminal, JSON logs, or `hidden` asked for.
pub fn progress_bar(len: u64, template: &str, hidden: bool) -> ProgressBar {
    if hidden || is_json() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar
}
