//! Writes the shell completions (bash, zsh, fish) and the man page of rt-cleanup, generated from
//! the clap definition in `src/cli.rs`, so that they can never drift from `--help`.
//!
//! ```text
//! cargo run --example generate-assets -- [--layout=local|debian] OUT_DIR
//! ```
//!
//! writes `OUT_DIR/rt-cleanup.bash`, `OUT_DIR/_rt-cleanup` (zsh), `OUT_DIR/rt-cleanup.fish`,
//! `OUT_DIR/rt-cleanup.1` and a page per command (`rt-cleanup-explain.1`, `rt-cleanup-history.1`,
//! as `git-log(1)` is to `git(1)`); `scripts/install.sh` installs them in the standard directories, and
//! `scripts/build-deb.sh` puts them in the Debian package. The layout only changes the paths the
//! man page names in FILES and SEE ALSO: `local` (the default) those of `scripts/install.sh`,
//! `debian` those of the package.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use roff::{bold, roman, Roff};
use rt_cleanup::cli::Arguments;

const USAGE: &str = "usage: cargo run --example generate-assets -- [--layout=local|debian] OUT_DIR";

fn main() -> ExitCode {
    let mut arguments: Vec<OsString> = std::env::args_os().skip(1).collect();
    let layout = match arguments.first().and_then(|first| first.to_str()) {
        Some("--layout=local") => Some(Layout::Local),
        Some("--layout=debian") => Some(Layout::Debian),
        _ => None,
    };
    if layout.is_some() {
        arguments.remove(0);
    }
    let [out_dir] = arguments.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if out_dir.to_str().is_some_and(|dir| dir.starts_with("--")) {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    match generate(Path::new(out_dir), layout.unwrap_or(Layout::Local)) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "generate-assets: cannot write to {}: {error}",
                Path::new(out_dir).display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Where the files that the man page names are installed.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// `scripts/install.sh`: /usr/local, units in /etc/systemd/system.
    Local,
    /// The Debian package: /usr, units in /usr/lib/systemd/system.
    Debian,
}

impl Layout {
    fn unit_dir(self) -> &'static str {
        match self {
            Layout::Local => "/etc/systemd/system",
            Layout::Debian => "/usr/lib/systemd/system",
        }
    }

    fn doc_dir(self) -> &'static str {
        match self {
            Layout::Local => "/usr/local/share/doc/rt-cleanup",
            Layout::Debian => "/usr/share/doc/rt-cleanup",
        }
    }
}

/// Writes every asset into `out_dir` (created when missing) and returns the paths written.
fn generate(out_dir: &Path, layout: Layout) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir)?;
    let mut command = Arguments::command();
    // The binary name, not the crate's, is what a shell completes and what `man` looks up.
    let name = command.get_name().to_owned();
    let mut written = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(clap_complete::generate_to(
            shell,
            &mut command,
            &name,
            out_dir,
        )?);
    }
    // Built anew, without clap's `help` command (which has no page of its own), so that each
    // command knows its page's name (`rt-cleanup-explain`) and its synopsis's
    // (`rt-cleanup explain`).
    let mut command = Arguments::command().disable_help_subcommand(true);
    command.build();
    for sub in command.get_subcommands() {
        let page = out_dir.join(format!(
            "{}.1",
            sub.get_display_name().unwrap_or_else(|| sub.get_name())
        ));
        std::fs::write(&page, command_page(sub.clone(), &command, layout)?)?;
        written.push(page);
    }
    let page = out_dir.join(format!("{name}.1"));
    std::fs::write(&page, man_page(command, layout)?)?;
    written.push(page);
    Ok(written)
}

/// The page of one command (`rt-cleanup explain`): `clap_mangen`'s standard sections, the text
/// after its options (what it says, its exit statuses) under the heading a reader looks for, and
/// SEE ALSO the main page.
fn command_page(
    command: clap::Command,
    main: &clap::Command,
    layout: Layout,
) -> std::io::Result<Vec<u8>> {
    let after_help = after_help_of(&command);
    let main_page = main.get_name();
    // A command has no version of its own: the binary's.
    let version = main.get_version().unwrap_or_default().to_owned();
    let page = clap_mangen::Man::new(command).source(format!("{main_page} {version}"));
    let mut out = Vec::new();
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_options_section(&mut out)?;
    let mut roff = Roff::new();
    roff.control("SH", ["VERDICTS, ROWS AND EXIT STATUS"]);
    verbatim(&mut roff, &after_help);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(format!(
        "{main_page}(1); {}/contract.md (docs/contract.md in the source tree), section 10.",
        layout.doc_dir()
    ))]);
    roff.control("SH", ["VERSION"]);
    roff.text([roman(version)]);
    roff.to_writer(&mut out)?;
    Ok(out)
}

/// The text a command's `--help` shows after its options.
fn after_help_of(command: &clap::Command) -> String {
    command
        .get_after_long_help()
        .or_else(|| command.get_after_help())
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Text laid out by hand (aligned tables of exit statuses), kept as it is rather than refilled.
fn verbatim(roff: &mut Roff, text: &str) {
    roff.control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
}

/// The man page: `clap_mangen`'s standard sections, except that the text after the options
/// (results, exit statuses, logging) gets the headings `man` readers look for instead of
/// `clap_mangen`'s generic "EXTRA", and FILES and SEE ALSO point at the operational files.
fn man_page(command: clap::Command, layout: Layout) -> std::io::Result<Vec<u8>> {
    let after_help = after_help_of(&command);
    let commands: Vec<String> = command
        .get_subcommands()
        .map(|sub| {
            format!(
                "{}(1)",
                sub.get_display_name().unwrap_or_else(|| sub.get_name())
            )
        })
        .collect();
    let version = command.get_version().unwrap_or_default().to_owned();
    let man = clap_mangen::Man::new(command);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;

    let mut roff = Roff::new();
    roff.control("SH", ["RESULTS, EXIT STATUS AND LOGS"]);
    verbatim(&mut roff, &after_help);
    roff.control("SH", ["FILES"]);
    for (path, what) in files(layout) {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(format!(
        "{}; systemd.timer(5), systemd.exec(5), journalctl(1), crontab(5), flock(1); \
         {}/operations.md (docs/operations.md in the source tree).",
        commands.join(", "),
        layout.doc_dir()
    ))]);
    roff.control("SH", ["VERSION"]);
    roff.text([roman(version)]);
    roff.to_writer(&mut out)?;
    Ok(out)
}

/// The files an operator meets, where the layout installs them.
fn files(layout: Layout) -> Vec<(String, String)> {
    let units = layout.unit_dir();
    let mut files = vec![
        (
            "/var/lib/rtmanager/state.db".to_owned(),
            "The runtime manager's state file (default of --state). SQLite writes its -journal or \
             -wal and -shm files beside it, so its directory must be writable for a real run."
                .to_owned(),
        ),
        (
            "/etc/default/rt-cleanup".to_owned(),
            "The RT_CLEANUP_* settings of the systemd service (EnvironmentFile=).".to_owned(),
        ),
        (
            format!("{units}/rt-cleanup.service, {units}/rt-cleanup.timer"),
            "The hourly systemd unit pair; logs are read with journalctl -u rt-cleanup. Site \
             changes go in drop-ins (systemctl edit rt-cleanup.service)."
                .to_owned(),
        ),
        (
            format!("{units}/rt-cleanup-failure@.service"),
            "The OnFailure= handler, which logs each failed run's severity and calls \
             /etc/rt-cleanup/on-failure when that is executable."
                .to_owned(),
        ),
    ];
    if let Layout::Debian = layout {
        files.push((
            "/usr/share/rt-cleanup/monitoring/rt-cleanup.rules.yml".to_owned(),
            "Prometheus recording and alert rules on the series of --metrics-file, with their \
             unit tests beside them (promtool test rules)."
                .to_owned(),
        ));
    }
    files
}
