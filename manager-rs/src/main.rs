//! `damocles-manager`: see [`damocles_manager::cli`].

fn main() {
    std::process::exit(damocles_manager::cli::main(std::env::args_os()));
}
