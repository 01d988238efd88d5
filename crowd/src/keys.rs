//! Camera keys from the command line: `crowd keys new`, and the first key `crowd up` makes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use common::auth::{CameraScope, KeyFile, NewKey, new_key};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Makes a new random camera key: prints the key (give it to the camera; it is stored
    /// nowhere) and the line for the key file (its hash and cameras, no secret).
    New(NewKeyArgs),
}

#[derive(Debug, Args)]
pub struct NewKeyArgs {
    /// Cameras the key may upload for: ids or patterns with `*`, comma-separated; `*` for all.
    #[arg(long, default_value = "*")]
    pub cameras: String,
    /// Photos a minute for this key (its own rate limit; otherwise the service's).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Append the line to this key file (created if missing) and print only the key.
    #[arg(long)]
    pub append: Option<PathBuf>,
}

pub fn run(command: &KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::New(args) => {
            let scope = CameraScope::parse(&args.cameras).map_err(anyhow::Error::msg)?;
            let mut key = new_key(&scope);
            if let Some(rate) = args.rate {
                anyhow::ensure!(rate > 0, "--rate must be at least 1");
                key.line.push_str(&format!(" rate={rate}/min"));
            }
            match &args.append {
                Some(path) => {
                    append_line(path, &key.line)?;
                    eprintln!("# added to {}: {}", path.display(), key.line);
                    println!("{}", key.key);
                }
                None => {
                    println!("# the camera key (cameras {scope}); shown once, stored nowhere:");
                    println!("{}", key.key);
                    println!("# the line for the key file (API_KEYS_FILE):");
                    println!("{}", key.line);
                }
            }
            Ok(())
        }
    }
}

/// Appends `line` to the key file (made if missing), checking that the file still parses with
/// it; the file is replaced as a whole (written beside it, then renamed), never left half written.
pub fn append_line(path: &Path, line: &str) -> anyhow::Result<()> {
    let mut text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    KeyFile::parse(&text)
        .map_err(|e| anyhow::anyhow!("{} with the new line: {e}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let partial = path.with_extension("partial");
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("writing {}", partial.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The key file of `crowd up`: when it does not exist yet, it is made with one key for every
/// camera, whose key is returned (to be shown once).
pub fn first_key(path: &Path) -> anyhow::Result<Option<NewKey>> {
    if path.exists() {
        return Ok(None);
    }
    let key = new_key(&CameraScope::parse("*").expect("* is a valid scope"));
    let header = format!(
        "# Camera keys of this stack: id, SHA-256 of the key, cameras. Add keys with\n# crowd keys new --cameras 'gate-*' --append {}",
        path.display()
    );
    append_line(path, &format!("{header}\n{}", key.line))?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_is_made_once_and_only_its_hash_is_written() {
        let dir = std::env::temp_dir().join(format!("crowd-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("api-keys");
        let key = first_key(&path).unwrap().expect("a key on first start");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&key.key), "no key in clear text");
        assert!(KeyFile::parse(&text).unwrap().verify(&key.key).is_ok());
        assert!(first_key(&path).unwrap().is_none(), "not made again");
        let second = new_key(&CameraScope::parse("gate-*").unwrap());
        append_line(&path, &second.line).unwrap();
        let file = KeyFile::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(file.len(), 2);
        assert!(
            append_line(&path, "garbage line").is_err(),
            "a line that breaks the file is refused"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
