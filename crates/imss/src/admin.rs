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
    config_file::update(path, &who(), None, |config| {
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
        created: config_file::now_rfc3339(),
    };
    config_file::update(path, &who(), None, |config| {
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

/// Who a change made with `imss admin` is recorded as in the audit log.
fn who() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }));
    format!("imss admin ({user})")
}
