//! Rebuilds the binary when the files it embeds with `include_dir!` change (on stable Rust the
//! macro cannot tell cargo which files it read): the plugin templates, the Rust guest SDK and
//! the WIT (`cli/author`).

fn main() {
    for dir in [
        "../plugins/templates",
        "../plugins/sdk/src",
        "../plugins/sdk/Cargo.toml",
        "../wit",
    ] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
