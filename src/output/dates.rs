//! A record's date, for grouping results into days, weeks or months (`report`,
//! `drift`): the value of an input field the record kept (`classify --date-field`), else
//! the modification time of its source file.

use std::time::SystemTime;

use super::results::ResultRecord;

/// A day, counted from 1970-01-01.
pub type Day = i64;

/// How results are grouped in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    /// ISO 8601 weeks (Monday to Sunday), named `2026-W45`.
    Week,
    Month,
}

impl Period {
    /// The period's name for a day: `2026-11-03`, `2026-W45`, `2026-11`.
    pub fn name(self, day: Day) -> String {
        let (year, month, date) = civil_from_days(day);
        match self {
            Period::Day => format!("{year:04}-{month:02}-{date:02}"),
            Period::Month => format!("{year:04}-{month:02}"),
            Period::Week => {
                // The ISO week's year is the year of its Thursday.
                let weekday = (day + 3).rem_euclid(7); // Monday 0
                let thursday = day - weekday + 3;
                let (iso_year, _, _) = civil_from_days(thursday);
                let week = (thursday - days_from_civil(iso_year, 1, 1)) / 7 + 1;
                format!("{iso_year:04}-W{week:02}")
            }
        }
    }
}

/// Where each record's date comes from.
pub struct RecordDates {
    /// The kept input field (`--date-field`), or none: the source's modification time.
    field: Option<String>,
    /// The source file last looked up (records of one file come together) and its day.
    last_source: Option<(String, Option<Day>)>,
}

impl RecordDates {
    pub fn new(field: Option<String>) -> Self {
        Self { field, last_source: None }
    }

    /// Whether dates are read from a field (else from files' modification times).
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The record's day: its date field where one is named (`None` when the record lacks
    /// it or it is no date), else its source file's modification day.
    pub fn day_of(&mut self, record: &ResultRecord) -> Option<Day> {
        match &self.field {
            Some(name) => record.fields.get(name).and_then(|value| parse_date(value)),
            None => self.modified_day(&record.source.path),
        }
    }

    fn modified_day(&mut self, path: &str) -> Option<Day> {
        if let Some((last, day)) = &self.last_source {
            if last == path {
                return *day;
            }
        }
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let day =
            modified.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| (d.as_secs() / 86_400) as Day);
        self.last_source = Some((path.to_string(), day));
        day
    }
}

/// A date as offices write them: ISO 8601 (`2026-11-03`, with or without a time after
/// it) or German (`03.11.2026`).
pub fn parse_date(value: &str) -> Option<Day> {
    let value = value.trim();
    let number = |s: &str| -> Option<i64> { s.chars().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())? };
    let (year, month, day) = if value.len() >= 10 && value.as_bytes()[4] == b'-' && value.as_bytes()[7] == b'-' {
        let rest = &value[10..];
        if !(rest.is_empty() || rest.starts_with('T') || rest.starts_with(' ')) {
            return None;
        }
        (number(value.get(0..4)?)?, number(value.get(5..7)?)?, number(value.get(8..10)?)?)
    } else {
        let mut parts = value.split('.');
        let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || y.len() != 4 {
            return None;
        }
        (number(y)?, number(m)?, number(d)?)
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month {
        return None;
    }
    Some(days_from_civil(year, month as u32, day as u32))
}

/// Days from 1970-01-01 to a date (Howard Hinnant's days_from_civil).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Day {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day counted from 1970-01-01 (Howard Hinnant's civil_from_days).
pub fn civil_from_days(days: Day) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_days() {
        for day in [-800_000, -1, 0, 1, 10_957, 20_000, 20_793, 2_000_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    #[test]
    fn iso_and_german_dates_are_read_and_nonsense_is_not() {
        let day = days_from_civil(2026, 11, 3);
        for value in ["2026-11-03", "2026-11-03T08:15:00Z", "2026-11-03 08:15", "03.11.2026", "3.11.2026"] {
            assert_eq!(parse_date(value), Some(day), "{value}");
        }
        assert_eq!(parse_date("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
        for value in ["", "2026-13-01", "2025-02-29", "2026-11-31", "2026-11-03x", "11/03/2026", "03.11.26", "heute"] {
            assert_eq!(parse_date(value), None, "{value}");
        }
    }

    #[test]
    fn periods_are_named_by_day_iso_week_and_month() {
        let day = days_from_civil(2026, 11, 3);
        assert_eq!(Period::Day.name(day), "2026-11-03");
        assert_eq!(Period::Month.name(day), "2026-11");
        assert_eq!(Period::Week.name(day), "2026-W45");
        // ISO weeks at year ends: 2021-01-03 is in 2020-W53, 2024-12-30 in 2025-W01.
        assert_eq!(Period::Week.name(days_from_civil(2021, 1, 3)), "2020-W53");
        assert_eq!(Period::Week.name(days_from_civil(2024, 12, 30)), "2025-W01");
        assert_eq!(Period::Week.name(days_from_civil(2026, 1, 1)), "2026-W01");
    }
}
