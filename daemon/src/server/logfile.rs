//! latchkeyd's log writer: stderr, capped in size when asked (`--log-max-bytes`).
//!
//! An autostarted daemon's stderr is `latchkeyd.log` in the runtime folder, often a
//! tmpfs (memory), and it writes one audit line per request: a plugin asking every
//! second adds ~20 MB a day. The client rotates that file before it starts a daemon
//! (one older generation is kept); this writer bounds what a long-running daemon
//! adds: once its file passes the cap, the file is emptied and a line says that older
//! lines were dropped. Only a regular file is capped: a pipe or the journal
//! (systemd) manages its own size.
//!
//! The writer works on the same open file as stderr (a duplicate of the descriptor),
//! so the truncation is seen by every write; the client opens the log in append mode,
//! so writes after it start again at the beginning.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

/// What the log says where it was cut.
const CUT_NOTICE: &[u8] = b"latchkeyd: the log reached its size limit; older lines were dropped\n";

/// A log writer: stderr, or a regular file capped at `max` bytes.
#[derive(Debug)]
pub struct LogWriter {
    capped: Option<Capped>,
}

#[derive(Debug)]
struct Capped {
    max: u64,
    /// The file and its size as far as this process wrote it. A std Mutex: one
    /// short write at a time, never across an await.
    file: Mutex<(File, u64)>,
}

impl LogWriter {
    /// Plain stderr.
    pub fn stderr() -> LogWriter {
        LogWriter { capped: None }
    }

    /// Stderr capped at `max` bytes when it is a regular file; plain stderr when it
    /// is anything else or cannot be inspected.
    pub fn capped_stderr(max: u64) -> LogWriter {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let dup = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map(File::from);
            if let Ok(file) = dup {
                return LogWriter::capped(file, max);
            }
        }
        let _unused = max;
        LogWriter::stderr()
    }

    /// `file` capped at `max` bytes if it is a regular file.
    pub fn capped(file: File, max: u64) -> LogWriter {
        let size = match file.metadata() {
            Ok(m) if m.is_file() => m.len(),
            _ => return LogWriter::stderr(),
        };
        LogWriter {
            capped: Some(Capped {
                max,
                file: Mutex::new((file, size)),
            }),
        }
    }
}

/// One event's writes.
#[derive(Debug)]
pub struct EventWriter<'a>(&'a LogWriter);

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(self)
    }
}

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(c) = &self.0.capped else {
            return std::io::stderr().write(buf);
        };
        let mut guard = c
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (file, size) = &mut *guard;
        if size.saturating_add(buf.len() as u64) > c.max {
            // Emptied, then written from the start (explicitly, for a file that was
            // not opened in append mode).
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(CUT_NOTICE)?;
            *size = CUT_NOTICE.len() as u64;
        }
        let n = file.write(buf)?;
        *size = size.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &self.0.capped {
            None => std::io::stderr().flush(),
            Some(c) => c
                .file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0
                .flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_log_never_grows_past_its_limit_and_says_where_it_was_cut() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("latchkeyd.log");
        std::fs::write(&path, vec![b'x'; 300]).unwrap();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let log = LogWriter::capped(file, 1000);
        for i in 0..200 {
            let line = format!("audit line {i:04} of a request\n");
            log.make_writer().write_all(line.as_bytes()).unwrap();
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(len <= 1000, "{len} bytes after line {i}");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("latchkeyd: the log reached"), "{text}");
        assert!(text.ends_with("audit line 0199 of a request\n"), "{text}");
        assert!(!text.contains('x'), "the old content is gone");
    }

    #[test]
    fn a_pipe_is_not_capped() {
        // Not a regular file: written as is (here, /dev/null).
        let null = File::options().write(true).open("/dev/null").unwrap();
        assert!(LogWriter::capped(null, 10).capped.is_none());
    }
}
