//! Maildir on disk: directories, file names, flags and atomic moves. Synchronous; the
//! async parts call it on blocking threads.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
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
    /// Its task key: the unique name (the file name before `:2,`), the stable key; see
    /// [`key_of`] for names that are not plain UTF-8.
    pub unique: String,
    /// Its flags (`S`, `F`, ...), sorted.
    pub flags: String,
    /// True when it is in `new/`.
    pub is_new: bool,
    /// The unique name as it is on disk (bytes, not necessarily UTF-8).
    pub unique_os: OsString,
}

/// The unique part of a Maildir file name: everything before the `:` of the info part.
pub fn unique_name(file_name: &str) -> &str {
    file_name.split_once(':').map_or(file_name, |(u, _)| u)
}

/// The task key of a file name: its unique part, with every byte that is not UTF-8
/// written `\xNN` and a backslash written `\\`. Every name gets a key (Unix names are
/// bytes) and no two names share one; a plain UTF-8 name without `\` is its own key.
pub fn key_of(file_name: &OsStr) -> String {
    let bytes = unique_bytes(file_name.as_bytes());
    let mut key = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                key.push_str("\\\\");
            } else {
                key.push(c);
            }
        }
        for b in chunk.invalid() {
            key.push_str(&format!("\\x{b:02x}"));
        }
    }
    key
}

/// Whether `key` can be a key [`key_of`] made, and names nothing outside a Maildir
/// directory. The one check the acknowledger applies to the keys it is given.
pub(crate) fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && !key.starts_with('.') && !key.contains(['/', ':', '\0'])
}

fn unique_bytes(name: &[u8]) -> &[u8] {
    name.iter()
        .position(|b| *b == b':')
        .map_or(name, |i| &name[..i])
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

/// What identifies one version of a directory entry and, for a symlink, of its target:
/// a change (rename over it, `chmod`, a target that appears) makes a new stamp, so a
/// failure is reported once per version and retried when something changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct FileStamp {
    entry: Version,
    target: Option<Version>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Version {
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    len: u64,
}

impl Version {
    fn of(m: &std::fs::Metadata) -> Version {
        Version {
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            len: m.len(),
        }
    }
}

impl FileStamp {
    /// The stamp of the entry at `path` (`NotFound` when the entry itself is gone).
    pub(crate) fn of(path: &Path) -> io::Result<FileStamp> {
        let entry = Version::of(&std::fs::symlink_metadata(path)?);
        let target = std::fs::metadata(path).ok().map(|m| Version::of(&m));
        Ok(FileStamp { entry, target })
    }
}

/// A directory's change stamp: inode and modification time (a create, rename or unlink
/// in it changes the time).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct DirStamp {
    ino: u64,
    mtime: (i64, i64),
}

/// A directory's entries older than this (by its modification time) are trusted to be
/// complete: a change within the file system's timestamp granularity after a listing
/// could leave the time as it was, so a listing of a just-changed directory is redone
/// next time ("racy" entries, as git calls them).
const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone, Debug)]
struct DirListing {
    stamp: DirStamp,
    settled: bool,
    files: Vec<MessageFile>,
}

/// The last listings of `new/` and `cur/`, reused while the directory has not changed,
/// so an idle source with a large handled backlog does not re-read it on every scan.
#[derive(Clone, Debug, Default)]
pub struct ListingCache {
    dirs: [Option<DirListing>; 2],
    listings: u64,
}

impl ListingCache {
    /// How many times a directory was read in full (not answered from the cache).
    pub fn listings(&self) -> u64 {
        self.listings
    }
}

const DIRS: [(&str, bool); 2] = [("new", true), ("cur", false)];

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

    /// Entries of `dir` (`new` or `cur`), unsorted; `None` when the directory is missing.
    /// Every entry but the hidden ones is a message candidate, whatever its type or name:
    /// a directory, a symlink or a name that is not UTF-8 is not skipped here, so it
    /// either becomes a task or fails visibly when read.
    fn list_dir(&self, dir: &str, is_new: bool) -> io::Result<Option<Vec<MessageFile>>> {
        let entries = match std::fs::read_dir(self.root.join(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if name.as_bytes().starts_with(b".") {
                continue;
            }
            let lossy = name.to_string_lossy();
            out.push(MessageFile {
                path: entry.path(),
                unique: key_of(&name),
                flags: if is_new {
                    String::new()
                } else {
                    flags_of(&lossy)
                },
                is_new,
                unique_os: OsStr::from_bytes(unique_bytes(name.as_bytes())).to_owned(),
            });
        }
        Ok(Some(out))
    }

    /// Messages in `new/` and `cur/`, sorted by unique name (deliveries are named by time,
    /// so roughly oldest first).
    pub fn list(&self) -> io::Result<Vec<MessageFile>> {
        let mut out = Vec::new();
        for (dir, is_new) in DIRS {
            out.extend(self.list_dir(dir, is_new)?.unwrap_or_default());
        }
        out.sort_by(|a, b| a.unique.cmp(&b.unique));
        Ok(out)
    }

    /// Messages waiting to be produced: all of `new/`, and `cur/` without `S`, `T` or `F`.
    pub fn pending(&self) -> io::Result<Vec<MessageFile>> {
        let mut files = self.list()?;
        files.retain(is_waiting);
        Ok(files)
    }

    /// [`Maildir::pending`], reading a directory again only when it changed since the
    /// listing kept in `cache`.
    pub fn pending_cached(&self, cache: &mut ListingCache) -> io::Result<Vec<MessageFile>> {
        let mut out = Vec::new();
        for (slot, (dir, is_new)) in DIRS.into_iter().enumerate() {
            let path = self.root.join(dir);
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    cache.dirs[slot] = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let stamp = DirStamp {
                ino: meta.ino(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
            };
            let fresh = cache.dirs[slot]
                .as_ref()
                .is_some_and(|l| l.settled && l.stamp == stamp);
            if !fresh {
                // Judged before reading: a change during the read leaves a newer time.
                let settled = meta
                    .modified()
                    .ok()
                    .and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
                    .is_some_and(|age| age >= SETTLED);
                let mut files = self.list_dir(dir, is_new)?.unwrap_or_default();
                files.retain(is_waiting);
                cache.listings += 1;
                cache.dirs[slot] = Some(DirListing {
                    stamp,
                    settled,
                    files,
                });
            }
            if let Some(listing) = &cache.dirs[slot] {
                out.extend(listing.files.iter().cloned());
            }
        }
        out.sort_by(|a, b| a.unique.cmp(&b.unique));
        Ok(out)
    }

    /// The message with key `unique`, if it is here.
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
        let mut name = file.unique_os.clone();
        name.push(":2,");
        name.push(flags.into_iter().collect::<String>());
        let target = self.root.join("cur").join(name);
        if target != file.path {
            std::fs::rename(&file.path, &target)?;
        }
        Ok(target)
    }

    /// Opens the message at `path` (an entry of this Maildir) for reading. A symlink is
    /// followed only to a regular file inside this Maildir's root: anyone who can write
    /// `new/` could otherwise have the source read any file the process may read. A
    /// directory, a dangling or looping link, or another kind of file is an error of kind
    /// [`io::ErrorKind::InvalidData`] (`NotFound` means the entry itself is gone).
    pub fn open_message(&self, path: &Path) -> io::Result<std::fs::File> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let meta = std::fs::symlink_metadata(path)?;
        let target = if meta.file_type().is_symlink() {
            let target = std::fs::canonicalize(path)
                .map_err(|e| invalid(format!("symlink without a usable target: {e}")))?;
            let root = std::fs::canonicalize(&self.root)?;
            if !target.starts_with(&root) {
                return Err(invalid(format!(
                    "symlink to {} outside the maildir",
                    target.display()
                )));
            }
            target
        } else {
            path.to_owned()
        };
        let file = std::fs::File::open(&target).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound if target != path => {
                invalid(format!("symlink target is gone: {e}"))
            }
            _ => e,
        })?;
        if !file.metadata()?.is_file() {
            return Err(invalid("not a regular file".to_owned()));
        }
        Ok(file)
    }

    /// Reads a message; when it is larger than `max_bytes`, only its header (up to the
    /// first empty line, at most 64 KiB). Returns the bytes and the file's size.
    pub fn read(path: &Path, max_bytes: u64) -> io::Result<(Vec<u8>, u64, bool)> {
        read_file(std::fs::File::open(path)?, max_bytes)
    }
}

/// Most bytes [`read_file`] keeps of an oversized message (its header).
pub(crate) const HEADER_READ_LIMIT: u64 = 64 * 1024;

fn is_waiting(f: &MessageFile) -> bool {
    f.is_new || !f.flags.contains(['S', 'T', 'F'])
}

/// [`Maildir::read`] of an open file.
pub(crate) fn read_file(file: std::fs::File, max_bytes: u64) -> io::Result<(Vec<u8>, u64, bool)> {
    let size = file.metadata()?.len();
    if size <= max_bytes {
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)?;
        return Ok((bytes, size, false));
    }
    let mut head = Vec::new();
    file.take(HEADER_READ_LIMIT).read_to_end(&mut head)?;
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
    fn keys_cover_every_name_and_never_collide() {
        assert_eq!(key_of(OsStr::new("1.A.h:2,S")), "1.A.h");
        assert_eq!(key_of(OsStr::new("1.a\\b.h")), "1.a\\\\b.h");
        assert_eq!(key_of(OsStr::from_bytes(b"1.\xff.h:2,")), "1.\\xff.h");
        assert_eq!(key_of(OsStr::from_bytes(b"1.\xff.h")), "1.\\xff.h");
        assert_ne!(
            key_of(OsStr::from_bytes(b"1.\xff.h")),
            key_of(OsStr::new("1.\\xff.h"))
        );
        assert!(is_valid_key(&key_of(OsStr::from_bytes(b"1.\xff\\.h"))));
        assert!(!is_valid_key("../x") && !is_valid_key("") && !is_valid_key("a:2,S"));
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
