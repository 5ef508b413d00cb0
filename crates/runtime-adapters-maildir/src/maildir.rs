//! Maildir on disk: directories, file names, flags and atomic moves. Synchronous; the
//! async parts call it on blocking threads.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// One Maildir (the root or a Maildir++ sub-folder).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Maildir {
    root: PathBuf,
}

/// A message file found in `new/` or `cur/`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MessageFile {
    /// Its full path.
    pub path: PathBuf,
    /// Its unique name (the file name before `:2,`): the stable key.
    pub unique: String,
    /// Its flags (`S`, `F`, ...), sorted.
    pub flags: String,
    /// True when it is in `new/`.
    pub is_new: bool,
}

/// The unique part of a Maildir file name: everything before the `:` of the info part.
pub fn unique_name(file_name: &str) -> &str {
    file_name.split_once(':').map_or(file_name, |(u, _)| u)
}

fn flags_of(file_name: &str) -> String {
    let mut flags: Vec<char> = file_name
        .split_once(":2,")
        .map_or("", |(_, f)| f)
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect();
    flags.sort_unstable();
    flags.dedup();
    flags.into_iter().collect()
}

impl Maildir {
    /// The Maildir at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Maildir { root: root.into() }
    }

    /// The Maildir++ sub-folder `name` (`"Rejected"` -> `root/.Rejected`); `None` for an
    /// empty name.
    pub fn folder(&self, name: &str) -> Option<Maildir> {
        let name = name
            .trim()
            .trim_start_matches("INBOX")
            .trim_start_matches(['.', '/']);
        if name.is_empty() {
            return None;
        }
        Some(Maildir::new(
            self.root.join(format!(".{}", name.replace('/', "."))),
        ))
    }

    /// Its root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates `tmp`, `new` and `cur` if missing.
    pub fn create(&self) -> io::Result<()> {
        for dir in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(self.root.join(dir))?;
        }
        Ok(())
    }

    /// Messages in `new/` and `cur/`, sorted by unique name (deliveries are named by time,
    /// so roughly oldest first).
    pub fn list(&self) -> io::Result<Vec<MessageFile>> {
        let mut out = Vec::new();
        for (dir, is_new) in [("new", true), ("cur", false)] {
            let entries = match std::fs::read_dir(self.root.join(dir)) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                out.push(MessageFile {
                    path: entry.path(),
                    unique: unique_name(&name).to_owned(),
                    flags: if is_new {
                        String::new()
                    } else {
                        flags_of(&name)
                    },
                    is_new,
                });
            }
        }
        out.sort_by(|a, b| a.unique.cmp(&b.unique));
        Ok(out)
    }

    /// Messages waiting to be produced: all of `new/`, and `cur/` without `S`, `T` or `F`.
    pub fn pending(&self) -> io::Result<Vec<MessageFile>> {
        let mut files = self.list()?;
        files.retain(|f| f.is_new || !f.flags.contains(['S', 'T', 'F']));
        Ok(files)
    }

    /// The message with unique name `unique`, if it is here.
    pub fn find(&self, unique: &str) -> io::Result<Option<MessageFile>> {
        Ok(self.list()?.into_iter().find(|f| f.unique == unique))
    }

    /// Moves `file` into this Maildir's `cur/` with `add` flags added and `remove` flags
    /// removed. Returns the new path. The target directories are created if missing.
    pub fn file_into(&self, file: &MessageFile, add: &str, remove: &str) -> io::Result<PathBuf> {
        self.create()?;
        let mut flags: Vec<char> = file
            .flags
            .chars()
            .chain(add.chars())
            .filter(|c| !remove.contains(*c))
            .collect();
        flags.sort_unstable();
        flags.dedup();
        let flags: String = flags.into_iter().collect();
        let target = self
            .root
            .join("cur")
            .join(format!("{}:2,{flags}", file.unique));
        if target != file.path {
            std::fs::rename(&file.path, &target)?;
        }
        Ok(target)
    }

    /// Reads a message; when it is larger than `max_bytes`, only its header (up to the
    /// first empty line, at most 64 KiB). Returns the bytes and the file's size.
    pub fn read(path: &Path, max_bytes: u64) -> io::Result<(Vec<u8>, u64, bool)> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        if size <= max_bytes {
            let mut bytes = Vec::with_capacity(size as usize);
            file.take(max_bytes.saturating_add(1))
                .read_to_end(&mut bytes)?;
            return Ok((bytes, size, false));
        }
        let mut head = Vec::new();
        file.take(64 * 1024).read_to_end(&mut head)?;
        let lf = head.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
        let crlf = head
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4);
        let end = match (lf, crlf) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(head.len()),
        };
        head.truncate(end);
        Ok((head, size, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_flags() {
        assert_eq!(
            unique_name("1700000000.M1P2.host:2,S"),
            "1700000000.M1P2.host"
        );
        assert_eq!(unique_name("1700000000.M1P2.host"), "1700000000.M1P2.host");
        assert_eq!(flags_of("x:2,TSF"), "FST");
        assert_eq!(flags_of("x"), "");
    }

    #[test]
    fn folders_are_maildir_plus_plus() {
        let m = Maildir::new("/m");
        assert_eq!(m.folder(""), None);
        assert_eq!(
            m.folder("Rejected").map(|f| f.root),
            Some(PathBuf::from("/m/.Rejected"))
        );
        assert_eq!(
            m.folder("INBOX.Done").map(|f| f.root),
            Some(PathBuf::from("/m/.Done"))
        );
        assert_eq!(
            m.folder("Orders/Bad").map(|f| f.root),
            Some(PathBuf::from("/m/.Orders.Bad"))
        );
    }
}
