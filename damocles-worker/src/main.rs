//! `damocles-worker`: see [`damocles_worker::cli`].

fn main() {
    std::process::exit(damocles_worker::cli::main(std::env::args_os()));
}
