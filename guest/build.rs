// The boot image needs its linker script only when built for the bare-metal target.
fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    if std::env::var("TARGET").is_ok_and(|t| t.ends_with("-none")) {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bin=ptcheck-guest-image=-T{dir}/link.ld");
    }
}
