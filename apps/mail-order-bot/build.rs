//! `sqlx::migrate!` embeds the migration files it finds at compile time; without this a
//! newly added file would not trigger a rebuild, and the binary would lack it.

fn main() {
    println!("cargo:rerun-if-changed=src/store/migrations");
}
