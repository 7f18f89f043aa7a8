//! Messages on stderr: `docclass: …` lines for people, or with `--log-format json` one
//! JSON object per line (`time` in seconds since 1970, `level`, `event`, `message`, and
//! the event's fields) for log collectors of schedulers.

use std::io::IsTerminal;
use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
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

/// Seconds between two progress lines where no bar can be drawn, unless
/// `$DOCCLASS_PROGRESS_SECONDS` says otherwise.
const PROGRESS_LINE_SECONDS: u64 = 30;

fn progress_line_seconds() -> u64 {
    std::env::var("DOCCLASS_PROGRESS_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(PROGRESS_LINE_SECONDS)
}

/// A progress bar of `len` steps drawn with `template` on a terminal. Where stderr is
/// no terminal (cron, nohup, a log file) or logs are JSON, the same progress is a
/// `progress` message every [`PROGRESS_LINE_SECONDS`] (or `$DOCCLASS_PROGRESS_SECONDS`),
/// so a long run never looks hung.
/// `hidden` hides it altogether.
pub fn progress_bar(len: u64, template: &str, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    if is_json() || !std::io::stderr().is_terminal() {
        let plain = template.replace("{bar:30} ", "");
        let bar = ProgressBar::with_draw_target(
            Some(len),
            ProgressDrawTarget::term_like_with_hz(Box::new(PeriodicLines::new(progress_line_seconds())), 1),
        );
        bar.set_style(ProgressStyle::with_template(&plain).expect("valid template"));
        return bar;
    }
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar
}

/// A stand-in terminal for indicatif that turns what it draws into a log message at
/// most once per interval.
#[derive(Debug)]
struct PeriodicLines {
    interval: std::time::Duration,
    last: std::sync::Mutex<std::time::Instant>,
}

impl PeriodicLines {
    fn new(seconds: u64) -> Self {
        Self {
            interval: std::time::Duration::from_secs(seconds),
            last: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn maybe_emit(&self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= self.interval {
            *last = std::time::Instant::now();
            info("progress", text, json!({}));
        }
    }
}

impl TermLike for PeriodicLines {
    fn width(&self) -> u16 {
        200
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.maybe_emit(s);
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.maybe_emit(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}
