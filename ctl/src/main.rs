//! brummerctl's entry point; everything lives in the library (see `lib.rs`).

fn main() {
    std::process::exit(brummerctl::main_entry());
}
