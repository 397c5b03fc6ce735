//! Rebuilds the app when a migration file is added or removed (edits to
//! embedded files rebuild it anyway).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
