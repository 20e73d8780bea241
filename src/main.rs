//! `vigile` binary: parses the command line and hands over to `vigile::cli`.

use clap::Parser;

fn main() {
    let cli = vigile::cli::Cli::parse();
    std::process::exit(vigile::cli::run(cli));
}
