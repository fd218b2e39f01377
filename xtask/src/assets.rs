//! `cargo xtask assets OUT_DIR`: writes brummerd(8), brummerctl(1) (plus one page per
//! brummerctl subcommand) and the bash, zsh and fish completions of both programs, all
//! generated from the clap definitions (`brummerd::cli::Args`, `brummerctl::cli::Cli`), and
//! copies the hand-written brummer.toml(5) beside them. Called by `packaging/build.sh`; the
//! packages take their files from OUT_DIR.

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::fs;
use std::path::Path;

/// Writes every asset under `out`; `root` is the repository.
pub fn assets(root: &Path, out: &Path) -> anyhow::Result<()> {
    let man = out.join("man");
    let comp = out.join("completions");
    for d in [&man, &comp] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }

    let daemon = brummerd::cli::Args::command();
    write_man(&man, daemon.clone(), "8", None)?;
    let ctl = brummerctl::cli::Cli::command();
    write_man(&man, ctl.clone(), "1", None)?;
    for sub in ctl.get_subcommands() {
        let name = format!("brummerctl-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(name.replace('-', " "));
        write_man(&man, sub, "1", Some("brummerctl"))?;
    }
    fs::copy(root.join("man/brummer.toml.5"), man.join("brummer.toml.5"))
        .context("cannot copy man/brummer.toml.5")?;

    for (mut cmd, bin) in [(daemon, "brummerd"), (ctl, "brummerctl")] {
        for (shell, file) in [
            (Shell::Bash, bin.to_owned()),
            (Shell::Zsh, format!("_{bin}")),
            (Shell::Fish, format!("{bin}.fish")),
        ] {
            let dir = comp.join(shell.to_string());
            fs::create_dir_all(&dir)?;
            let mut f = fs::File::create(dir.join(&file))
                .with_context(|| format!("cannot create {}", dir.join(&file).display()))?;
            clap_complete::generate(shell, &mut cmd, bin, &mut f);
        }
    }
    println!("wrote man pages and completions to {}", out.display());
    Ok(())
}

/// Renders one page. `parent` names the program whose subcommand this is (for SEE ALSO).
fn write_man(
    dir: &Path,
    cmd: clap::Command,
    section: &str,
    parent: Option<&str>,
) -> anyhow::Result<()> {
    let name = cmd.get_name().to_owned();
    let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section(section)
        .date(man_date())
        .source(format!("brummer {}", env!("CARGO_PKG_VERSION")))
        .manual("brummer");
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut buf)?;
    }
    if cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some() {
        man.render_extra_section(&mut buf)?;
    }
    man.render_version_section(&mut buf)?;
    let mut see_also = vec![];
    match (name.as_str(), parent) {
        ("brummerd", _) => {
            see_also.extend(["brummerctl(1)", "brummer.toml(5)", "systemd.service(5)"])
        }
        ("brummerctl", _) => see_also.extend(["brummerd(8)", "brummer.toml(5)"]),
        (_, Some(_)) => see_also.extend(["brummerctl(1)", "brummerd(8)"]),
        _ => {}
    }
    let refs: Vec<String> = see_also
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (n, s) = r.trim_end_matches(')').split_once('(').unwrap_or((r, ""));
            let sep = if i + 1 < see_also.len() { "," } else { "" };
            format!(".BR {n} ({s}){sep}")
        })
        .collect();
    // clap_mangen calls the after-help section EXTRA; name it for what it holds.
    let heading = if name == "brummerctl" {
        "\"EXIT STATUS\""
    } else {
        "NOTES"
    };
    let text = String::from_utf8(buf)?.replace(".SH EXTRA\n", &format!(".SH {heading}\n"));
    let text = format!("{text}.SH \"SEE ALSO\"\n{}\n", refs.join("\n"));
    let path = dir.join(format!("{name}.{section}"));
    fs::write(&path, tidy_roff(&text))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The page date: from `SOURCE_DATE_EPOCH` (reproducible builds) or now, as YYYY-MM-DD.
fn man_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Makes clap_mangen's output pass `mandoc -Tlint` without a message: no trailing blanks,
/// no `.br` around an empty line (a paragraph break mandoc would skip), and text lines
/// folded at 80 bytes (roff fills them back together).
fn tidy_roff(text: &str) -> String {
    let text = text.replace(".br\n\n.br\n", ".br\n");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with('.') || line.starts_with('\'') || line.len() <= 80 {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut rest = line;
        while rest.len() > 80 {
            // The last plain blank (not an escaped "\ ") at or before byte 80.
            let cut = rest.as_bytes()[..=80]
                .iter()
                .enumerate()
                .rev()
                .find(|&(i, &b)| b == b' ' && i > 0 && rest.as_bytes()[i - 1] != b'\\')
                .map(|(i, _)| i);
            let Some(cut) = cut else { break };
            out.push_str(&rest[..cut]);
            out.push('\n');
            rest = rest[cut + 1..].trim_start();
            if rest.starts_with('.') || rest.starts_with('\'') {
                out.push_str("\\&");
            }
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_folds_long_text_lines_only() {
        let long = format!("{}.x 'y {}", "word ".repeat(16), "w ".repeat(20));
        let out = tidy_roff(&format!(".TH X 1\n{long}\n.SH {}\nend  \n", "A".repeat(90)));
        for l in out.lines().filter(|l| !l.starts_with(".SH")) {
            assert!(l.len() <= 80, "{l:?}");
            assert_eq!(l, l.trim_end());
        }
        assert!(out.contains(&format!(".SH {}", "A".repeat(90))));
        let joined: Vec<&str> = out
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with(".SH"))
            .collect();
        assert_eq!(
            joined.join(" ").replace("\\&", ""),
            long.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    #[test]
    fn dates_are_civil() {
        // SAFETY: single-threaded test of our own variable.
        unsafe { std::env::set_var("SOURCE_DATE_EPOCH", "1700000000") };
        assert_eq!(man_date(), "2023-11-14");
    }
}
