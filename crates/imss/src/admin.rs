//! `imss admin …`: web interface accounts and API tokens, written into the configuration
//! file (validated, atomically, the previous file kept as `FILE.bak`). A running server
//! applies them on SIGHUP.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use imss_server::config::ApiToken;
use imss_server::config_file;
use imss_web::auth::{self, Role};
use std::io::{BufRead, IsTerminal as _};
use std::path::{Path, PathBuf};

/// The `imss admin` subcommands.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Set the web interface password of USER (adding the account if missing). The password
    /// is read from standard input, one line, at least 10 characters.
    SetPassword {
        /// Login name.
        user: String,
        /// Configuration file (TOML) to change.
        #[arg(long)]
        config: PathBuf,
        /// Role of the account; default: unchanged for an existing account, admin for a new
        /// one.
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// Make the user choose a new password at the next login.
        #[arg(long)]
        must_change: bool,
    },
    /// Make an API token NAME and print it once on standard output; only its SHA-256 is
    /// stored. Send it as `Authorization: Bearer TOKEN`.
    CreateToken {
        /// Name of the token (to tell tokens apart and to revoke one).
        name: String,
        /// Configuration file (TOML) to change.
        #[arg(long)]
        config: PathBuf,
        /// What the token may do.
        #[arg(long, value_parser = parse_role, default_value = "admin")]
        role: Role,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// Runs one `imss admin` command.
pub fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::SetPassword {
            user,
            config,
            role,
            must_change,
        } => set_password(&user, &config, role, must_change),
        AdminCommand::CreateToken { name, config, role } => create_token(&name, &config, role),
    }
}

fn set_password(user: &str, path: &Path, role: Option<Role>, must_change: bool) -> Result<()> {
    // Check the file before asking for a password.
    imss_server::Config::load(path)?;
    if user.trim().is_empty() {
        bail!("the user name is empty");
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("New web interface password for {user}: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']);
    auth::check_new_password(password).map_err(|why| anyhow::anyhow!("password refused: {why}"))?;
    let hash = auth::hash_password(password).map_err(anyhow::Error::msg)?;
    let mut added = false;
    config_file::update(path, |config| {
        added = !config.http.admins.iter().any(|a| a.user == user);
        config_file::set_password(config, user, role, &hash, must_change);
        Ok(())
    })
    .with_context(|| format!("updating {}", path.display()))?;
    eprintln!(
        "{}: {} web account {user:?}{}",
        path.display(),
        if added { "added" } else { "updated" },
        if must_change {
            " (new password required at the next login)"
        } else {
            ""
        }
    );
    Ok(())
}

fn create_token(name: &str, path: &Path, role: Role) -> Result<()> {
    let token = auth::new_api_token();
    let entry = ApiToken {
        name: name.to_string(),
        hash: auth::token_sha256_hex(&token),
        role,
        created: rfc3339_now(),
    };
    config_file::update(path, |config| {
        if config.http.api_tokens.iter().any(|t| t.name == name) {
            return Err(format!(
                "a token named {name:?} exists already; remove its [[http.api_tokens]] entry \
                 first or choose another name"
            ));
        }
        config.http.api_tokens.push(entry);
        Ok(())
    })
    .with_context(|| format!("updating {}", path.display()))?;
    println!("{token}");
    eprintln!(
        "{}: API token {name:?} ({role}) added; it is shown only now",
        path.display()
    );
    Ok(())
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
