//! One instance only, on Linux, before any window system runs: the first instance listens
//! on a Unix socket named after its config file, in the user's runtime dir; a second launch
//! of the same config connects, asks for the window, and ends. (Elsewhere, and for the same
//! job, `tauri-plugin-single-instance` runs inside Tauri.)

use std::{
    hash::{Hash as _, Hasher as _},
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::desktop::Desktop;

/// What a second launch sends.
const OPEN: &str = "open-window\n";

/// The outcome of starting: this is the only instance, or another one took over.
pub enum Claim {
    First(UnixListener),
    /// Another instance runs, and was asked to open its window.
    Handed,
}

/// The socket for `config`: one per config file, so that two servers (two configs) can
/// run side by side, but the same one never twice.
fn socket_path(config: &Path) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let config = config.canonicalize().unwrap_or_else(|_| config.to_owned());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    config.hash(&mut hasher);
    let user = std::env::var("USER").unwrap_or_default();
    user.hash(&mut hasher);
    dir.join(format!("kith-desktop-{:016x}.sock", hasher.finish()))
}

/// Becomes the only instance for `config`, or hands over to the one that is.
pub fn claim(config: &Path) -> std::io::Result<Claim> {
    let path = socket_path(config);
    if let Ok(mut stream) = UnixStream::connect(&path) {
        stream.write_all(OPEN.as_bytes())?;
        // Wait for the answer, so that the window is on its way when this launch ends.
        let mut answer = String::new();
        let _ = BufReader::new(stream).read_line(&mut answer);
        return Ok(Claim::Handed);
    }
    // Nobody listens: a socket left by an instance that was killed goes.
    let _ = std::fs::remove_file(&path);
    UnixListener::bind(&path).map(Claim::First)
}

/// Answers second launches for as long as the app runs.
pub fn serve(listener: UnixListener, desktop: Arc<Desktop>) {
    std::thread::Builder::new()
        .name("kith-instance".to_owned())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut line = String::new();
                if BufReader::new(&stream).read_line(&mut line).is_ok() && line == OPEN {
                    desktop.open_window();
                    let _ = stream.write_all(b"ok\n");
                }
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::warn!(error = %e, "no single-instance listener"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desktop::Wake;

    #[test]
    fn a_second_launch_of_the_same_config_asks_the_first_for_its_window() {
        let dir = std::env::temp_dir().join(format!("kith-instance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let config = dir.join("kith.toml");
        let Ok(Claim::First(listener)) = claim(&config) else {
            panic!("the first launch is the only instance");
        };
        let (wake, woken) = std::sync::mpsc::channel();
        let desktop = Desktop::new(config.clone(), Default::default(), None, Some(wake));
        serve(listener, desktop);
        // Another config is another server: it runs on its own.
        let Ok(Claim::First(_other)) = claim(&dir.join("other.toml")) else {
            panic!("another config starts its own instance");
        };
        assert!(matches!(claim(&config), Ok(Claim::Handed)));
        assert_eq!(
            woken.recv_timeout(std::time::Duration::from_secs(5)),
            Ok(Wake::OpenWindow)
        );
        for config in [config, dir.join("other.toml")] {
            let _ = std::fs::remove_file(socket_path(&config));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_socket_left_by_a_killed_instance_is_taken_over() {
        let dir = std::env::temp_dir().join(format!("kith-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let config = dir.join("kith.toml");
        // Bound, then dropped without removing the file: nobody listens any more.
        drop(UnixListener::bind(socket_path(&config)).expect("a socket"));
        assert!(socket_path(&config).exists());
        assert!(matches!(claim(&config), Ok(Claim::First(_))));
        let _ = std::fs::remove_file(socket_path(&config));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
