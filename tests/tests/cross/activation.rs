//! Socket activation (docs/behaviour.md, "Daemon and fallback"): `latchkeyd` started
//! the way systemd starts it, without systemd. A short Python activator binds the
//! socket at the path the client computes, then forks and execs the daemon with the
//! listening socket on fd 3 and `LISTEN_FDS=1`, `LISTEN_PID=<its pid>`, as
//! `systemd.socket` does (sd_listen_fds(3)). The daemon must adopt that socket instead
//! of binding its own, say so in `latchkey daemon status`, serve tokens through it, and
//! leave the activator's socket in place when SIGTERM stops it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use latchkey_tests::harness::{World, bin};

/// The activator. argv[1] is the daemon. It prints the daemon's pid on stdout,
/// waits for it, and exits with its exit code (128 + N when killed by signal N).
/// pyenv's shim adds PYENV_* variables on the way in; they are dropped so the
/// daemon sees the harness's environment plus the two LISTEN_* variables.
const ACTIVATOR: &str = r#"
import os, socket, sys
daemon = sys.argv[1]
run = os.path.join(os.environ["LATCHKEY_HOME"], "run")
os.mkdir(run, 0o700)
os.chmod(run, 0o700)
path = os.path.join(run, "latchkeyd.sock")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o600)
s.listen(128)
pid = os.fork()
if pid == 0:
    if s.fileno() != 3:
        os.dup2(s.fileno(), 3)
    os.set_inheritable(3, True)
    env = {k: v for k, v in os.environ.items() if "PYENV" not in k}
    env["LISTEN_FDS"] = "1"
    env["LISTEN_PID"] = str(os.getpid())
    os.execve(daemon, [daemon], env)
s.close()
print(pid, flush=True)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"#;

/// The running activator and its daemon; both are killed on drop, even when the
/// test panics.
struct Activator {
    python: Child,
    daemon_pid: u32,
    log: PathBuf,
}

impl Activator {
    fn start(world: &World) -> Activator {
        let log = world.home.path().join("activator.log");
        let log_file = std::fs::File::create(&log).expect("the activator log can be created");
        let mut cmd = world
            .home
            .command(
                "python3",
                [Path::new("-c"), Path::new(ACTIVATOR), &bin("latchkeyd")],
            )
            .into_command();
        cmd.stdout(Stdio::piped()).stderr(log_file);
        let mut python = cmd
            .spawn()
            .expect("python3 can be spawned (it plays systemd here)");
        let stdout = python.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let daemon_pid = match line.trim().parse::<u32>() {
            Ok(pid) if read.is_ok() => pid,
            _ => {
                let _ = python.kill();
                let _ = python.wait();
                panic!(
                    "the activator did not print the daemon's pid (got {line:?}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Activator {
            python,
            daemon_pid,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 5 s) until the daemon answers a health request; fails at once,
    /// with the log, when the daemon exits instead.
    fn wait_ready(&mut self, socket: &Path) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Some(code) = self.wait_exit(Duration::ZERO) {
                panic!("latchkeyd exited with {code} at start:\n{}", self.log());
            }
            if health(socket) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("latchkeyd did not answer within 5 s:\n{}", self.log());
    }

    /// Waits up to `limit` for the activator (so the daemon) to exit; its code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .python
                .try_wait()
                .expect("the activator can be waited on")
            {
                return Some(status.code().unwrap_or(-1));
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Activator {
    fn drop(&mut self) {
        // While the activator runs it has not reaped the daemon, so the pid is still
        // the daemon's (alive or a zombie) and cannot have been reused.
        if matches!(self.python.try_wait(), Ok(None)) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.daemon_pid.to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = self.python.kill();
        }
        let _ = self.python.wait();
    }
}

/// One health request with a short timeout: a connection the daemon does not
/// accept (it is still starting) must not stall the wait.
fn health(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = String::new();
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
        .is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()))
        .ino()
}

#[test]
fn a_socket_activated_daemon_adopts_fd_3_serves_tokens_and_stops_on_sigterm() {
    let world = World::default_provider();
    let socket = world.socket();
    let mut activator = Activator::start(&world);
    let pid = activator.daemon_pid;

    // The activator bound the socket before forking: private, and a socket.
    let meta = std::fs::symlink_metadata(&socket).expect("the activator bound the socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let before = meta.ino();

    activator.wait_ready(&socket);
    let st = world
        .latchkey(["daemon", "status", "--json"])
        .run()
        .ok()
        .json();
    assert_eq!(st["activation"], "systemd", "{st}\n{}", activator.log());
    assert_eq!(st["pid"], pid, "{st}");
    assert_eq!(st["socket"], socket.display().to_string(), "{st}");

    // The activated daemon still takes the single-instance lock beside the socket:
    // a second, self-started daemon finds it and exits 0.
    let lock = std::fs::read_to_string(socket.with_file_name("latchkeyd.lock"))
        .expect("the activated daemon wrote its lock file");
    assert_eq!(lock.trim(), pid.to_string());
    let second = world
        .home
        .command(bin("latchkeyd"), Vec::<&str>::new())
        .run();
    second.ok();
    assert!(
        second
            .stderr
            .contains(&format!("already running (pid {pid})")),
        "{second:#?}"
    );
    world.capture_text("second latchkeyd", &second.all_output());

    // A login and a token through the activated daemon.
    world.login();
    let token = world.latchkey(["token"]).run();
    assert!(!token.ok().stdout.trim().is_empty(), "{token:#?}");
    let st = world
        .latchkey(["daemon", "status", "--json"])
        .run()
        .ok()
        .json();
    assert!(
        st["counters"]["token_requests"].as_u64().unwrap_or(0) >= 1,
        "the token did not go through the daemon: {st}"
    );
    let status = world.latchkey(["status", "--json"]).run().ok().json();
    assert_eq!(status["logged_in"], true, "{status}");
    assert_eq!(status["daemon"]["running"], true, "{status}");
    assert_eq!(status["daemon"]["pid"], pid, "{status}");

    // It served on the activator's socket and never bound one of its own.
    assert_eq!(
        inode(&socket),
        before,
        "the activated daemon replaced the activator's socket\n{}",
        activator.log()
    );

    World::signal(pid, "TERM");
    let code = activator.wait_exit(Duration::from_secs(5));
    let log = activator.log();
    world.capture_text("activated latchkeyd log", &log);
    assert_eq!(code, Some(0), "latchkeyd did not exit 0 on SIGTERM:\n{log}");
    assert!(
        log.contains("activation=\"systemd\"") || log.contains("activation=systemd"),
        "the start-up line names the activation:\n{log}"
    );
    // The socket belongs to the activator (systemd removes it on stop, or keeps it
    // to start the daemon again): the daemon must not unlink it.
    assert_eq!(
        inode(&socket),
        before,
        "the activated daemon removed the activator's socket on exit"
    );
}
