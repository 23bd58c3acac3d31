//! Terminal and desktop helpers for `latchkey login` (docs/behaviour.md, "Commands").
//!
//! - [`choose_browser`] decides whether a browser can be opened, and with what,
//!   so login can fall back to the device flow and say why when none can.
//! - [`open_browser`] starts it without letting it touch our terminal.
//! - [`Spinner`] shows the time left while the device flow polls.
//! - [`qr_text`] draws the verification URL as a QR code made of text.
//!
//! Nothing here sees token material: the only data shown is the authorize URL
//! and the device verification URL, which the login prints anyway.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

// ---------------------------------------------------------------------------
// Choosing a browser
// ---------------------------------------------------------------------------

/// How `latchkey login` can show the authorize URL to the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Browser {
    /// A command line the person configured; it always counts as a browser.
    Command {
        program: String,
        /// May contain `%s`, which is replaced by the URL; without one the URL
        /// is appended as the last argument.
        args: Vec<String>,
        /// The variable it came from: `"LATCHKEY_BROWSER"` or `"BROWSER"`.
        source: &'static str,
    },
    /// The platform's opener (`xdg-open`, `open`, `explorer`), given the URL.
    Platform { program: &'static str },
    /// No browser can be opened; `reason` is a phrase for the person, e.g.
    /// "this is an SSH session (SSH_CONNECTION is set)".
    Unavailable { reason: String },
}

impl fmt::Display for Browser {
    /// A short description for messages such as "Opening the browser (...)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Command {
                program, source, ..
            } => write!(f, "{program}, from {source}"),
            Self::Platform { program } => f.write_str(program),
            Self::Unavailable { reason } => f.write_str(reason),
        }
    }
}

const LATCHKEY_BROWSER: &str = "LATCHKEY_BROWSER";
const BROWSER: &str = "BROWSER";
/// Any of these means we run over SSH, where a browser would open (if at all)
/// on the remote machine rather than in front of the person.
const SSH_VARS: [&str; 3] = ["SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY"];

/// Picks how to open a browser: `LATCHKEY_BROWSER`, then `BROWSER`, then the
/// platform opener when the session can show one.
///
/// `env` reads a variable (`&|k| std::env::var(k).ok()` in production); empty
/// values count as unset, as shells leave them when "unsetting" by `VAR=`.
/// `in_container` is [`detect_container`] in production.
pub fn choose_browser(env: &dyn Fn(&str) -> Option<String>, in_container: bool) -> Browser {
    if let Some(line) = set_var(env, LATCHKEY_BROWSER) {
        return configured(&line, LATCHKEY_BROWSER);
    }
    if let Some(line) = set_var(env, BROWSER).and_then(|v| first_browser_entry(&v)) {
        return configured(&line, BROWSER);
    }
    platform_opener(THIS_OS, env, in_container)
}

/// The value of `name` unless it is unset or only whitespace.
fn set_var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

/// `BROWSER` is, by the old convention, a list of commands to try in order.
/// We do not try them in turn (we cannot tell whether a browser really opened),
/// so the first non-empty one is used. Windows paths contain `:`, so there the
/// whole value is one command.
fn first_browser_entry(value: &str) -> Option<String> {
    if cfg!(windows) {
        return Some(value.to_owned());
    }
    value
        .split(':')
        .find(|entry| !entry.trim().is_empty())
        .map(str::to_owned)
}

/// A configured command line. One that cannot be parsed is reported rather
/// than skipped, so the person learns why their setting had no effect.
fn configured(line: &str, source: &'static str) -> Browser {
    match split_command_line(line) {
        Ok(mut words) if words.first().is_some_and(|p| !p.is_empty()) => {
            let program = words.remove(0);
            Browser::Command {
                program,
                args: words,
                source,
            }
        }
        // Blank values were filtered out earlier, but `""` or `'' x` parse to
        // an empty first word, which names no program.
        Ok(_) => Browser::Unavailable {
            reason: format!("{source} names no command"),
        },
        Err(why) => Browser::Unavailable {
            reason: format!("{source} cannot be used: {why}"),
        },
    }
}

/// Splits a command line on whitespace, with `'...'` and `"..."` grouping
/// words. There are no escapes (backslashes are common in Windows paths) and
/// no shell: a quote character inside a word needs the other kind of quotes.
fn split_command_line(line: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    // `None` between words, so that `""` still yields an (empty) word.
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.get_or_insert_default().push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            None if c.is_whitespace() => words.extend(word.take()),
            None => word.get_or_insert_default().push(c),
        }
    }
    if quote.is_some() {
        return Err("it has an unterminated quote");
    }
    words.extend(word);
    Ok(words)
}

/// The operating-system families whose openers differ. Chosen with `cfg!`
/// rather than `#[cfg]` so every branch compiles and is unit-tested on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Os {
    /// Linux and the BSDs: `xdg-open` on an X11 or Wayland desktop.
    FreeDesktop,
    Mac,
    Windows,
    Other,
}

const THIS_OS: Os = if cfg!(target_os = "macos") {
    Os::Mac
} else if cfg!(windows) {
    Os::Windows
} else if cfg!(unix) {
    Os::FreeDesktop
} else {
    Os::Other
};

fn platform_opener(os: Os, env: &dyn Fn(&str) -> Option<String>, in_container: bool) -> Browser {
    let unavailable = |reason: String| Browser::Unavailable { reason };
    match os {
        // `explorer URL` hands the URL to the default browser without a shell;
        // `cmd /c start` would split the URL at its `&`s.
        Os::Windows => Browser::Platform {
            program: "explorer",
        },
        Os::Mac => match ssh_var(env) {
            Some(var) => unavailable(ssh_reason(var)),
            None => Browser::Platform { program: "open" },
        },
        Os::FreeDesktop => {
            if let Some(var) = ssh_var(env) {
                unavailable(ssh_reason(var))
            } else if in_container {
                unavailable("this looks like a container".to_owned())
            } else if set_var(env, "DISPLAY").is_none() && set_var(env, "WAYLAND_DISPLAY").is_none()
            {
                unavailable("no display (DISPLAY and WAYLAND_DISPLAY are unset)".to_owned())
            } else {
                Browser::Platform {
                    program: "xdg-open",
                }
            }
        }
        Os::Other => unavailable("no known way to open a browser on this system".to_owned()),
    }
}

fn ssh_var(env: &dyn Fn(&str) -> Option<String>) -> Option<&'static str> {
    SSH_VARS.into_iter().find(|var| set_var(env, var).is_some())
}

fn ssh_reason(var: &str) -> String {
    format!("this is an SSH session ({var} is set)")
}

/// Whether we seem to run inside a container, where a desktop opener would
/// either be missing or open nothing the person can see.
pub fn detect_container() -> bool {
    looks_like_container(
        &|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()),
        &|path| Path::new(path).exists(),
    )
}

/// `container` is set by systemd-nspawn and podman; the files are
/// dropped by Docker and by podman respectively.
fn looks_like_container(env_set: &dyn Fn(&str) -> bool, exists: &dyn Fn(&str) -> bool) -> bool {
    env_set("container") || exists("/.dockerenv") || exists("/run/.containerenv")
}

// ---------------------------------------------------------------------------
// Opening it
// ---------------------------------------------------------------------------

impl Browser {
    /// The program and arguments that open `url`.
    fn argv(&self, url: &str) -> Result<(&str, Vec<String>), String> {
        match self {
            Self::Command { program, args, .. } => Ok((program, with_url(args, url))),
            Self::Platform { program } => Ok((program, vec![url.to_owned()])),
            Self::Unavailable { reason } => Err(reason.clone()),
        }
    }
}

/// Puts the URL where `%s` appears (the old `BROWSER` convention), or last.
fn with_url(args: &[String], url: &str) -> Vec<String> {
    if args.iter().any(|a| a.contains("%s")) {
        args.iter().map(|a| a.replace("%s", url)).collect()
    } else {
        args.iter().cloned().chain([url.to_owned()]).collect()
    }
}

/// Starts the browser on `url` and returns without waiting for it.
///
/// Its standard streams are null so it can neither scribble over the login's
/// output nor steal the terminal's input; on Unix it gets its own process
/// group so a Ctrl-C that abandons the login does not also kill a browser we
/// happened to start. The error says which program could not be started; it
/// is only about starting: openers such as `xdg-open` fail later, unseen,
/// which is why the login always prints the URL as well.
pub fn open_browser(b: &Browser, url: &str) -> Result<(), String> {
    let (program, args) = b.argv(url)?;
    let mut command = Command::new(program);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("could not start {program}: {e}"))?;
    // Reap it in the background so it does not linger as a zombie while the
    // login waits; its exit status tells us nothing we could act on.
    let reaper = thread::Builder::new()
        .name("latchkey-browser-reaper".to_owned())
        .spawn(move || drop(child.wait()));
    // Without a thread, init reaps the child once we exit: harmless.
    drop(reaper);
    Ok(())
}

// ---------------------------------------------------------------------------
// Spinner
// ---------------------------------------------------------------------------

/// Braille frames: one column wide in every common terminal font.
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK: Duration = Duration::from_millis(120);

/// A one-line "⠋ Waiting for approval in the browser… 4:32 left" on stderr.
///
/// Design: [`Spinner::start`] runs a background thread that redraws the line
/// every 120 ms from a fixed deadline, so the animation does not depend on how
/// often the device flow polls (every 5–10 s) and the poll loop needs no
/// spinner calls at all. Stop the returned [`SpinnerHandle`] (or drop it)
/// before printing anything else, since both write to the terminal.
///
/// Keep `message` short: the redraw returns to the start of the line with
/// `\r`, which cannot undo a line that wrapped.
#[derive(Debug)]
pub enum Spinner {}

impl Spinner {
    /// Starts spinning on stderr, or returns `None` when stderr is not a
    /// terminal or `TERM=dumb` (which cannot clear a line). `NO_COLOR` needs
    /// no check: the spinner uses no colour.
    pub fn start(message: &str, deadline: Instant) -> Option<SpinnerHandle> {
        let term = std::env::var("TERM").ok();
        if !can_spin(io::stderr().is_terminal(), term.as_deref()) {
            return None;
        }
        Self::spawn(message, deadline, Box::new(io::stderr()))
    }

    /// Starts the drawing thread on any writer, so tests can watch it. `None`
    /// if no thread can be started: the spinner is decoration, never a reason
    /// to fail a login.
    fn spawn(
        message: &str,
        deadline: Instant,
        out: Box<dyn Write + Send>,
    ) -> Option<SpinnerHandle> {
        let (stop, stopped) = mpsc::channel();
        let message = message.to_owned();
        let thread = thread::Builder::new()
            .name("latchkey-spinner".to_owned())
            .spawn(move || spin(out, &message, deadline, &stopped))
            .ok()?;
        Some(SpinnerHandle {
            running: Some((stop, thread)),
        })
    }
}

/// A running [`Spinner`]. Stopping or dropping it joins the drawing thread and
/// clears the line, so later output starts on a clean line.
#[derive(Debug)]
pub struct SpinnerHandle {
    /// Dropping the sender wakes the thread at once and ends it.
    running: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl SpinnerHandle {
    /// Stops the animation and clears its line. Dropping does the same.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            drop(stop);
            // The thread only writes to a terminal; if it panicked there is
            // nothing left to clean up or to report.
            drop(thread.join());
        }
    }
}

impl Drop for SpinnerHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A spinner needs a terminal that understands `\r` and "clear to end of line".
fn can_spin(stderr_is_terminal: bool, term: Option<&str>) -> bool {
    stderr_is_terminal && term != Some("dumb")
}

/// The thread body: draw, wait one tick or until stopped, repeat; then clear.
fn spin(
    mut out: Box<dyn Write + Send>,
    message: &str,
    deadline: Instant,
    stopped: &mpsc::Receiver<()>,
) {
    for frame in (0..FRAMES.len()).cycle() {
        let left = deadline.saturating_duration_since(Instant::now());
        if redraw(&mut out, &spinner_line(frame, message, left)).is_err() {
            // stderr is gone; nothing more can be shown.
            return;
        }
        match stopped.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Clearing is best effort: the same broken stderr would also stop the
    // login's next message, which reports its own way.
    drop(redraw(&mut out, ""));
}

/// Replaces the current terminal line with `line`.
fn redraw(out: &mut dyn Write, line: &str) -> io::Result<()> {
    write!(out, "\r{line}\x1b[K")?;
    out.flush()
}

fn spinner_line(frame: usize, message: &str, left: Duration) -> String {
    let glyph = FRAMES[frame % FRAMES.len()];
    format!("{glyph} {message} {} left", clock(left))
}

/// `m:ss`, or `h:mm:ss` from an hour up. Rounded up, so `0:00` appears only
/// once the time is really over.
fn clock(left: Duration) -> String {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

// ---------------------------------------------------------------------------
// QR code
// ---------------------------------------------------------------------------

/// `data` as a QR code drawn with half-block characters, two modules per
/// character cell vertically, rows separated by `\n` (no trailing newline).
///
/// The colours are inverted (dark modules are blank, light ones are `█`)
/// because most terminals are light text on a dark background; that also
/// draws the quiet zone, which a phone needs to find the code, as a visible
/// border. Error correction is low: a screen is not a smudged label, and a
/// smaller code fits more terminals.
///
/// Fails, with a message that does not repeat `data`, when it is too long
/// for a QR code.
pub fn qr_text(data: &str) -> Result<String, String> {
    let code = QrCode::with_error_correction_level(data, EcLevel::L)
        .map_err(|e| format!("cannot draw a QR code: {e}"))?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn choose(pairs: &[(&str, &str)], in_container: bool) -> Browser {
        choose_browser(&env_of(pairs), in_container)
    }

    fn command(program: &str, args: &[&str], source: &'static str) -> Browser {
        Browser::Command {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            source,
        }
    }

    fn reason(b: &Browser) -> &str {
        match b {
            Browser::Unavailable { reason } => reason,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    // --- choose_browser ---

    #[test]
    fn latchkey_browser_wins_over_browser() {
        let b = choose(
            &[
                ("LATCHKEY_BROWSER", "firefox --new-window"),
                ("BROWSER", "chromium"),
            ],
            false,
        );
        assert_eq!(b, command("firefox", &["--new-window"], "LATCHKEY_BROWSER"));
    }

    #[test]
    fn explicit_browser_counts_over_ssh_in_a_container_without_display() {
        let env = [
            ("BROWSER", "w3m"),
            ("SSH_CONNECTION", "1.2.3.4 5 6.7.8.9 22"),
        ];
        assert_eq!(choose(&env, true), command("w3m", &[], "BROWSER"));
        let env = [("LATCHKEY_BROWSER", "echo"), ("SSH_TTY", "/dev/pts/1")];
        assert_eq!(choose(&env, true), command("echo", &[], "LATCHKEY_BROWSER"));
    }

    #[test]
    fn blank_latchkey_browser_falls_through_to_browser() {
        let b = choose(&[("LATCHKEY_BROWSER", "  "), ("BROWSER", "lynx")], false);
        assert_eq!(b, command("lynx", &[], "BROWSER"));
    }

    #[test]
    fn browser_list_uses_first_non_empty_entry() {
        let b = choose(&[("BROWSER", ":firefox %s:chromium")], false);
        assert_eq!(b, command("firefox", &["%s"], "BROWSER"));
    }

    #[test]
    fn latchkey_browser_is_not_split_on_colons() {
        let b = choose(&[("LATCHKEY_BROWSER", "open -a 'A:B'")], false);
        assert_eq!(b, command("open", &["-a", "A:B"], "LATCHKEY_BROWSER"));
    }

    #[test]
    fn unparsable_setting_is_reported_not_skipped() {
        let b = choose(
            &[
                ("LATCHKEY_BROWSER", "firefox 'oops"),
                ("BROWSER", "chromium"),
            ],
            false,
        );
        assert_eq!(
            reason(&b),
            "LATCHKEY_BROWSER cannot be used: it has an unterminated quote"
        );
    }

    #[test]
    fn empty_program_is_reported() {
        let b = choose(&[("BROWSER", "'' %s")], false);
        assert_eq!(reason(&b), "BROWSER names no command");
    }

    #[test]
    fn free_desktop_needs_a_display() {
        let none = platform_opener(Os::FreeDesktop, &env_of(&[]), false);
        assert_eq!(
            reason(&none),
            "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
        );
        let empty = platform_opener(Os::FreeDesktop, &env_of(&[("DISPLAY", "")]), false);
        assert!(matches!(empty, Browser::Unavailable { .. }));
        let xdg = Browser::Platform {
            program: "xdg-open",
        };
        for var in ["DISPLAY", "WAYLAND_DISPLAY"] {
            let b = platform_opener(Os::FreeDesktop, &env_of(&[(var, ":0")]), false);
            assert_eq!(b, xdg, "{var}");
        }
    }

    #[test]
    fn free_desktop_refuses_ssh_even_with_a_forwarded_display() {
        for var in ["SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY"] {
            let env = env_of(&[("DISPLAY", "localhost:10.0"), (var, "x")]);
            let b = platform_opener(Os::FreeDesktop, &env, false);
            assert_eq!(reason(&b), format!("this is an SSH session ({var} is set)"));
        }
    }

    #[test]
    fn free_desktop_refuses_containers() {
        let b = platform_opener(Os::FreeDesktop, &env_of(&[("DISPLAY", ":0")]), true);
        assert_eq!(reason(&b), "this looks like a container");
    }

    #[test]
    fn mac_opens_without_display_but_not_over_ssh() {
        let b = platform_opener(Os::Mac, &env_of(&[]), true);
        assert_eq!(b, Browser::Platform { program: "open" });
        let b = platform_opener(Os::Mac, &env_of(&[("SSH_CLIENT", "x")]), false);
        assert!(reason(&b).contains("SSH"));
    }

    #[test]
    fn windows_uses_explorer_and_other_systems_have_none() {
        let b = platform_opener(Os::Windows, &env_of(&[]), false);
        assert_eq!(
            b,
            Browser::Platform {
                program: "explorer"
            }
        );
        let b = platform_opener(Os::Other, &env_of(&[("DISPLAY", ":0")]), false);
        assert!(matches!(b, Browser::Unavailable { .. }));
    }

    #[test]
    fn container_markers() {
        let none = |_: &str| false;
        assert!(!looks_like_container(&none, &none));
        assert!(looks_like_container(&|n| n == "container", &none));
        assert!(looks_like_container(&none, &|p| p == "/.dockerenv"));
        assert!(looks_like_container(&none, &|p| p == "/run/.containerenv"));
    }

    // --- command lines ---

    #[test]
    fn split_handles_quotes_and_whitespace() {
        let words =
            split_command_line("  \"/Applications/My Browser\"  -a 'x \"y\"' a\"b c\"d ''\t")
                .unwrap();
        assert_eq!(
            words,
            ["/Applications/My Browser", "-a", "x \"y\"", "ab cd", ""]
        );
        assert_eq!(
            split_command_line(r"C:\Tools\b.exe").unwrap(),
            [r"C:\Tools\b.exe"]
        );
        assert!(split_command_line("a \"b").is_err());
    }

    #[test]
    fn url_replaces_percent_s_or_goes_last() {
        let url = "http://127.0.0.1:1/authorize?a=1&b=2";
        let b = command("firefox", &["--new-tab=%s", "-x"], "BROWSER");
        let (program, args) = b.argv(url).unwrap();
        assert_eq!(program, "firefox");
        assert_eq!(args, [format!("--new-tab={url}"), "-x".to_owned()]);

        let b = command("firefox", &["-x"], "BROWSER");
        assert_eq!(b.argv(url).unwrap().1, ["-x", url]);

        let b = Browser::Platform {
            program: "xdg-open",
        };
        assert_eq!(b.argv(url).unwrap(), ("xdg-open", vec![url.to_owned()]));
    }

    #[test]
    fn display_names_the_source() {
        assert_eq!(
            command("firefox", &[], "BROWSER").to_string(),
            "firefox, from BROWSER"
        );
    }

    // --- open_browser ---

    #[test]
    fn open_browser_refuses_unavailable_with_its_reason() {
        let b = Browser::Unavailable {
            reason: "no display".to_owned(),
        };
        assert_eq!(open_browser(&b, "http://x").unwrap_err(), "no display");
    }

    #[test]
    fn open_browser_reports_a_missing_program() {
        let b = command(
            "/nonexistent/latchkey-test-browser",
            &[],
            "LATCHKEY_BROWSER",
        );
        let err = open_browser(&b, "http://x").unwrap_err();
        assert!(
            err.starts_with("could not start /nonexistent/latchkey-test-browser: "),
            "{err}"
        );
    }

    /// Polls for `cond` for up to 10 s: generous, so a loaded machine does not
    /// fail the test, while a real bug still does.
    fn eventually(cond: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }

    #[cfg(unix)]
    #[test]
    fn open_browser_passes_the_url_and_returns_without_waiting() {
        let dir = std::env::temp_dir().join(format!("latchkey-ui-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (go, out) = (dir.join("go"), dir.join("url"));
        // The "browser" waits for us to say go: had open_browser waited for
        // it, we would never get to say it and it would write "timeout".
        let script = format!(
            "i=0; while [ ! -e '{go}' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
             if [ -e '{go}' ]; then printf '%s' \"$1\"; else printf timeout; fi > '{out}.tmp' && \
             mv '{out}.tmp' '{out}'",
            go = go.display(),
            out = out.display(),
        );
        let b = command("sh", &["-c", &script, "sh"], "LATCHKEY_BROWSER");
        open_browser(&b, "http://127.0.0.1:9/cb?a=1&b=2").unwrap();
        std::fs::write(&go, "").unwrap();
        let done = eventually(|| out.exists());
        let written = std::fs::read_to_string(&out);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(done, "the browser command never ran");
        assert_eq!(written.unwrap(), "http://127.0.0.1:9/cb?a=1&b=2");
    }

    // --- spinner ---

    #[test]
    fn clock_rounds_up_and_shows_hours() {
        assert_eq!(clock(Duration::ZERO), "0:00");
        assert_eq!(clock(Duration::from_millis(1)), "0:01");
        assert_eq!(clock(Duration::from_secs(272)), "4:32");
        assert_eq!(clock(Duration::from_millis(271_500)), "4:32");
        assert_eq!(clock(Duration::from_secs(3600 + 62)), "1:01:02");
    }

    #[test]
    fn spinner_line_cycles_frames() {
        let left = Duration::from_secs(272);
        assert_eq!(spinner_line(0, "Waiting…", left), "⠋ Waiting… 4:32 left");
        assert_eq!(
            spinner_line(FRAMES.len() + 1, "Waiting…", left),
            "⠙ Waiting… 4:32 left"
        );
    }

    #[test]
    fn spinner_needs_a_capable_terminal() {
        assert!(can_spin(true, Some("xterm-256color")));
        assert!(can_spin(true, None));
        assert!(!can_spin(true, Some("dumb")));
        assert!(!can_spin(false, Some("xterm")));
    }

    /// A writer the test can read while the spinner thread owns a clone.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn spinner_animates_until_stopped_then_clears_its_line() {
        let out = Shared::default();
        let deadline = Instant::now() + Duration::from_secs(90);
        let spinner = Spinner::spawn("Waiting…", deadline, Box::new(out.clone())).unwrap();
        assert!(eventually(|| out.text().contains("\r⠙ Waiting…")));
        spinner.stop();
        let text = out.text();
        assert!(text.starts_with("\r⠋ Waiting… 1:30 left\x1b[K"), "{text:?}");
        assert!(text.ends_with("left\x1b[K\r\x1b[K"), "{text:?}");
        // Stopped means stopped: nothing more is drawn afterwards.
        thread::sleep(TICK * 2);
        assert_eq!(out.text(), text);
    }

    #[test]
    fn dropping_the_spinner_stops_it_and_clears_its_line() {
        let out = Shared::default();
        let spinner = Spinner::spawn("x", Instant::now(), Box::new(out.clone())).unwrap();
        drop(spinner);
        let text = out.text();
        assert_eq!(text, "\r⠋ x 0:00 left\x1b[K\r\x1b[K");
    }

    // --- QR ---

    /// Reads the half-block drawing back into rows of "is dark" modules.
    fn modules_of(text: &str) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in text.lines() {
            let (top, bottom): (Vec<bool>, Vec<bool>) = line
                .chars()
                .map(|c| match c {
                    // Inverted: a drawn half is a light module.
                    '█' => (false, false),
                    '▀' => (false, true),
                    '▄' => (true, false),
                    ' ' => (true, true),
                    other => panic!("unexpected {other:?}"),
                })
                .unzip();
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    #[test]
    fn qr_draws_the_code_inside_a_quiet_zone() {
        let data = "https://id.example.com/device?user_code=ABCD-EFGH";
        let text = qr_text(data).unwrap();
        let code = QrCode::with_error_correction_level(data, EcLevel::L).unwrap();
        let (width, quiet) = (code.width(), 4);
        let side = width + 2 * quiet;

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), side.div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == side));
        assert!(!text.ends_with('\n'));

        let modules = modules_of(&text);
        for (y, row) in modules.iter().enumerate().take(side) {
            for (x, &dark) in row.iter().enumerate() {
                let inside =
                    (quiet..quiet + width).contains(&x) && (quiet..quiet + width).contains(&y);
                let expected = inside && code[(x - quiet, y - quiet)] == qrcode::Color::Dark;
                assert_eq!(dark, expected, "module ({x}, {y})");
            }
        }
    }

    #[test]
    fn qr_differs_for_different_data() {
        assert_ne!(
            qr_text("https://a.example/1").unwrap(),
            qr_text("https://a.example/2").unwrap()
        );
    }

    #[test]
    fn qr_refuses_oversize_data_without_echoing_it() {
        let data = "x".repeat(8000);
        let err = qr_text(&data).unwrap_err();
        assert!(err.starts_with("cannot draw a QR code: "), "{err}");
        assert!(err.len() < 200, "{err}");
    }
}
