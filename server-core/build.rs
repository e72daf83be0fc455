//! Embeds the built UI (`ui/dist/`, made by `npm run build` in `ui/`) so that `kith serve`
//! serves it at `/_kith/` from the binary alone. Without a build, the server answers there
//! with a page saying how to make one.
//!
//! Also hands the linker `kith.order`, the order of the release binary's functions.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let ui = manifest.join("..").join("ui");
    let dist = ui.join("dist");
    // A missing dist is watched through its parent (which the repository always has:
    // the generated API types live in it): creating it changes `ui/`.
    if dist.is_dir() {
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        println!("cargo:rerun-if-changed={}", ui.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    let mut files = Vec::new();
    if dist.is_dir() {
        collect(&dist, &dist, &mut files);
    }
    files.sort();
    let mut code = String::from("/// The UI's files: (path under `/_kith/`, bytes).\n");
    code.push_str("pub(crate) static UI_FILES: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("ui_files.rs");
    fs::write(out, code).expect("write ui_files.rs");
    link_order(&manifest);
}

/// Places the functions that an idle server runs next to each other in the `kith` binary,
/// so that far fewer pages of its code are resident (tests/bench/layout.sh, which writes
/// `kith.order`, says why). Optimised builds only, and only on x86_64 Linux, where rustc
/// links with rust-lld by default: other linkers lack the flag. Names in the file that no
/// longer match a function are skipped.
fn link_order(manifest: &Path) {
    let order = manifest.join("kith.order");
    println!("cargo:rerun-if-changed={}", order.display());
    let target = env::var("TARGET").unwrap_or_default();
    let optimised = env::var("OPT_LEVEL").is_ok_and(|level| level != "0");
    if target != "x86_64-unknown-linux-gnu" || !optimised || !order.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=kith=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bin=kith=-Wl,--no-warn-symbol-ordering");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let absolute = fs::canonicalize(&path).unwrap_or(path);
            files.push((name, absolute));
        }
    }
}
