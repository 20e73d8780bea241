//! `vigile` binary: parses the command line and hands over to `vigile::cli`.

use clap::Parser;

/// A proxied request allocates some eighty small blocks (Pingora's session,
/// header maps, futures) and frees them at once; mimalloc's thread-local free
/// lists do that in a fraction of glibc malloc's instructions.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = vigile::cli::Cli::parse();
    std::process::exit(vigile::cli::run(cli));
}
