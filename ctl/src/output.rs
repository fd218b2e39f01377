//! How results reach stdout: aligned tables, colours (TTY only), JSON documents and lines.
//!
//! Rendering functions are pure (they return strings) so they are tested without a
//! terminal; [`Printer`] is the only writer of stdout and turns every write error into
//! [`CtlError::Output`], which `main_entry` treats as a quiet exit 0 for a broken pipe.

use crate::exit::CtlError;
use brummer_proto::ProcessState;
use serde::Serialize;
use std::ffi::OsStr;
use std::io::{self, IsTerminal, Write};

/// Colour output when stdout is a terminal and `NO_COLOR` is not set to anything
/// non-empty (https://no-color.org).
pub fn color_wanted(stdout_is_tty: bool, no_color: Option<&OsStr>) -> bool {
    stdout_is_tty && no_color.is_none_or(OsStr::is_empty)
}

/// [`color_wanted`] for this process.
pub fn color_for_stdout() -> bool {
    color_wanted(
        io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Red,
    Green,
    Yellow,
    Blue,
    Magenta,
    Cyan,
    Dim,
}

impl Color {
    fn sgr(self) -> &'static str {
        match self {
            Color::Red => "31",
            Color::Green => "32",
            Color::Yellow => "33",
            Color::Blue => "34",
            Color::Magenta => "35",
            Color::Cyan => "36",
            Color::Dim => "2",
        }
    }
}

/// `text` wrapped in the colour's escape sequence when `enabled`.
pub fn paint(text: &str, color: Option<Color>, enabled: bool) -> String {
    match color {
        Some(c) if enabled => format!("\x1b[{}m{text}\x1b[0m", c.sgr()),
        _ => text.to_owned(),
    }
}

/// The colour of a state: green is fine, yellow is in transition, red needs a human.
pub fn state_color(state: ProcessState) -> Color {
    match state {
        ProcessState::Running => Color::Green,
        ProcessState::Starting | ProcessState::Stopping | ProcessState::Backoff => Color::Yellow,
        ProcessState::Failed => Color::Red,
        ProcessState::Exited | ProcessState::Stopped => Color::Dim,
    }
}

/// A stable colour per process name, for `NAME | ` prefixes.
pub fn name_color(name: &str) -> Color {
    const PALETTE: [Color; 5] = [
        Color::Cyan,
        Color::Green,
        Color::Yellow,
        Color::Blue,
        Color::Magenta,
    ];
    // FNV-1a: stable across runs and platforms, unlike std's RandomState.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    PALETTE[(h % PALETTE.len() as u64) as usize]
}

/// `SIGKILL` for 9, `SIGRTMIN+3`, or `signal 99` when unknown.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        _ => {
            let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
            return match sig {
                s if s == min => "SIGRTMIN".to_owned(),
                s if s > min && s <= max => format!("SIGRTMIN+{}", s - min),
                s => format!("signal {s}"),
            };
        }
    };
    name.to_owned()
}

/// How the last run ended: `code 1`, `SIGKILL`, or `-`.
pub fn last_exit(exit_code: Option<i32>, exit_signal: Option<i32>) -> String {
    match (exit_signal, exit_code) {
        (Some(sig), _) => signal_name(sig),
        (None, Some(code)) => format!("code {code}"),
        (None, None) => "-".to_owned(),
    }
}

/// One table cell: its text and an optional colour (applied after padding is computed, so
/// escape sequences never disturb the alignment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub color: Option<Color>,
}

impl Cell {
    pub fn colored(text: impl Into<String>, color: Color) -> Cell {
        Cell {
            text: text.into(),
            color: Some(color),
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, color: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::from(text.to_owned())
    }
}

/// Columns separated by two spaces, left-aligned, the last column not padded.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// The table as lines (each ending in `\n`).
    pub fn render(&self, color: bool) -> String {
        let ncols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; ncols];
        let header_cells: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| Cell::from(h.as_str()))
            .collect();
        for row in std::iter::once(&header_cells).chain(&self.rows) {
            for (i, c) in row.iter().enumerate() {
                widths[i] = widths[i].max(c.text.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header_cells).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(&paint(&c.text, c.color, color));
                if i + 1 < row.len() {
                    let pad = widths[i] - c.text.chars().count();
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The one writer of results. Generic so tests can capture output in a `Vec<u8>`.
pub struct Printer<W: Write> {
    out: W,
}

/// brummerctl's stdout: buffered, so that thousands of log lines go out in a few writes
/// instead of one each (`Stdout` alone flushes at every newline). Streams flush whenever
/// nothing more has arrived from the daemon; `main_entry` flushes at the end.
pub type Stdout = io::BufWriter<io::StdoutLock<'static>>;

impl Printer<Stdout> {
    pub fn stdout() -> Self {
        Printer::new(io::BufWriter::with_capacity(64 * 1024, io::stdout().lock()))
    }
}

impl<W: Write> Printer<W> {
    pub fn new(out: W) -> Self {
        Printer { out }
    }

    /// Writes `text` as is (callers include the newlines).
    pub fn text(&mut self, text: &str) -> Result<(), CtlError> {
        self.out
            .write_all(text.as_bytes())
            .map_err(CtlError::Output)
    }

    /// Writes one line (buffered: see [`Stdout`]).
    pub fn line(&mut self, line: &str) -> Result<(), CtlError> {
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(CtlError::Output)
    }

    /// One pretty-printed JSON document.
    pub fn json_pretty(&mut self, value: &impl Serialize) -> Result<(), CtlError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CtlError::BadReply(format!("cannot print as JSON: {e}")))?;
        self.line(&text)
    }

    /// One compact JSON value on its own line (NDJSON).
    pub fn json_line(&mut self, value: &impl Serialize) -> Result<(), CtlError> {
        let text = serde_json::to_string(value)
            .map_err(|e| CtlError::BadReply(format!("cannot print as JSON: {e}")))?;
        self.line(&text)
    }

    pub fn flush(&mut self) -> Result<(), CtlError> {
        self.out.flush().map_err(CtlError::Output)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A diagnostic on stderr: `brummerctl: MESSAGE`. Failures to write it are ignored (there is
/// nowhere left to report them).
pub fn warn(message: &str) {
    let _ = writeln!(io::stderr().lock(), "brummerctl: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn color_only_on_a_tty_without_no_color() {
        assert!(color_wanted(true, None));
        assert!(!color_wanted(false, None));
        assert!(!color_wanted(true, Some(OsStr::new("1"))));
        // no-color.org: an empty NO_COLOR does not count.
        assert!(color_wanted(true, Some(OsStr::new(""))));
    }

    #[test]
    fn table_aligns_and_colours_without_breaking_alignment() {
        let mut t = Table::new(["NAME", "STATE", "PID"]);
        t.push(vec![
            "web".into(),
            Cell::colored("running", Color::Green),
            "1234".into(),
        ]);
        t.push(vec![
            "worker-long".into(),
            Cell::colored("failed", Color::Red),
            "-".into(),
        ]);
        let plain = t.render(false);
        assert_eq!(
            plain,
            "NAME         STATE    PID\n\
             web          running  1234\n\
             worker-long  failed   -\n"
        );
        assert!(!plain.contains('\x1b'));
        let colored = t.render(true);
        assert!(colored.contains("\x1b[32mrunning\x1b[0m  1234"));
        let stripped = colored.replace("\x1b[32m", "").replace("\x1b[31m", "");
        assert_eq!(stripped.replace("\x1b[0m", ""), plain);
    }

    #[test]
    fn last_exit_and_signals() {
        assert_eq!(last_exit(Some(1), None), "code 1");
        assert_eq!(last_exit(None, Some(9)), "SIGKILL");
        assert_eq!(last_exit(Some(0), Some(15)), "SIGTERM");
        assert_eq!(last_exit(None, None), "-");
        assert_eq!(signal_name(libc::SIGRTMIN() + 2), "SIGRTMIN+2");
        assert_eq!(signal_name(200), "signal 200");
    }

    #[test]
    fn name_colors_are_stable() {
        assert_eq!(name_color("web"), name_color("web"));
        let distinct: std::collections::HashSet<_> = ["web", "worker", "db", "cache", "api"]
            .iter()
            .map(|n| format!("{:?}", name_color(n)))
            .collect();
        assert!(distinct.len() > 1);
    }

    /// A writer whose reader has gone away, as stdout is under `brummerctl logs | head -1`.
    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn broken_pipe_is_an_output_error_that_exits_zero() {
        let mut p = Printer::new(ClosedPipe);
        let e = p.line("hello").unwrap_err();
        assert!(e.is_broken_pipe());
        assert_eq!(e.exit_code(), crate::exit::OK);
    }

    #[test]
    fn real_epipe_is_recognised() {
        // Rust ignores SIGPIPE, so writing to a pipe without a reader returns EPIPE.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(b);
        let mut p = Printer::new(a);
        let e = p.line("x").unwrap_err();
        assert!(e.is_broken_pipe(), "{e:?}");
    }

    #[test]
    fn printer_writes_lines_and_json() {
        let mut p = Printer::new(Vec::new());
        p.line("a").unwrap();
        p.json_line(&serde_json::json!({"k": 1})).unwrap();
        assert_eq!(String::from_utf8(p.into_inner()).unwrap(), "a\n{\"k\":1}\n");
    }
}
