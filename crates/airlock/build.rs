//! Rebuilds the tests when a fixture migration is added or removed.

fn main() {
    println!("cargo:rerun-if-changed=tests/fixtures");
}
