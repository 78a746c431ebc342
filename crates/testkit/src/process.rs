//! Spawning server processes that die with the test process.
//!
//! Children get `PR_SET_PDEATHSIG = SIGKILL`, so even a test binary killed
//! with SIGKILL leaves no server behind. The signal fires when the *thread*
//! that forked exits, so every child is forked from one long-lived thread.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type Job = (Command, bool, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> std::io::Result<&'static Mutex<mpsc::Sender<Job>>> {
    static SPAWNER: OnceLock<Option<Mutex<mpsc::Sender<Job>>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("testkit-spawner".into())
                .spawn(move || {
                    for (mut cmd, die_with_parent, reply) in rx {
                        if die_with_parent {
                            // SAFETY: prctl is async-signal-safe; the closure
                            // allocates nothing.
                            unsafe {
                                cmd.pre_exec(|| {
                                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                        return Err(std::io::Error::last_os_error());
                                    }
                                    Ok(())
                                });
                            }
                        }
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .ok()
                .map(|_| Mutex::new(tx))
        })
        .as_ref()
        .ok_or_else(|| std::io::Error::other("cannot start the testkit spawner thread"))
}

/// Spawns `cmd`; with `die_with_parent` the child is killed when this process
/// exits in any way.
pub(crate) fn spawn(cmd: Command, die_with_parent: bool) -> std::io::Result<Child> {
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()?
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, die_with_parent, reply_tx))
        .map_err(|_| std::io::Error::other("spawner thread gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread gone"))?
}

/// Sends a signal to a process.
pub(crate) fn signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    // SAFETY: kill(2) with a pid we spawned; no memory is shared.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Kills and reaps a child, ignoring one that already exited.
pub(crate) fn kill_and_reap(child: &mut Child) {
    // A stopped (SIGSTOP) process still dies on SIGKILL.
    let _ = child.kill();
    let _ = child.wait();
}
