use super::*;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn a_kid_or_an_email_starting_with_a_hyphen_is_a_value_not_an_option() {
    // base64url kids start with `-` one time in 64: `-V…` and `-h…` once
    // printed the version or the help and exited 0, retiring nothing.
    for args in [
        &[
            "vigile",
            "keys",
            "retire",
            "-VH-Apw3q",
            "--config",
            "c.yaml",
        ][..],
        &["vigile", "--config", "c.yaml", "keys", "retire", "-hx"],
        &["vigile", "keys", "retire", "--config", "c.yaml", "-x"],
    ] {
        let cli = parse(args);
        assert_eq!(cli.config.as_deref(), Some(Path::new("c.yaml")), "{args:?}");
        match cli.command {
            Command::Keys(KeysCommand::Retire { kid }) => {
                assert!(kid.starts_with('-'), "{args:?}: {kid}")
            }
            other => panic!("{args:?}: {other:?}"),
        }
    }
    match parse(&["vigile", "user", "delete", "-a@example.com"]).command {
        Command::User(UserCommand::Delete { email }) => assert_eq!(email, "-a@example.com"),
        other => panic!("{other:?}"),
    }
    let cli = parse(&[
        "vigile",
        "user",
        "create",
        "--email",
        "-b@example.com",
        "--first-name",
        "A",
        "--last-name",
        "B",
    ]);
    match cli.command {
        Command::User(UserCommand::Create(c)) => assert_eq!(c.email, "-b@example.com"),
        other => panic!("{other:?}"),
    }
    // `--help` is still help.
    let help = Cli::try_parse_from(["vigile", "keys", "retire", "--help"]);
    assert!(matches!(help, Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp));
}
