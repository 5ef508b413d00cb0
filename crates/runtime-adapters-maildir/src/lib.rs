//! # runtime-adapters-maildir
//!
//! A [`TaskSource`] over a Maildir (what Dovecot, Postfix, mbsync and getmail write), and
//! its [`SourceAcknowledger`]. It knows Maildir, not what the messages mean.
//!
//! ## What counts as new
//!
//! Maildir's convention: a delivery lands in `new/`; a mail client that has *looked* at it
//! moves it to `cur/` and records flags after `:2,` in the file name (`S` seen, `F`
//! flagged, `T` trashed, ...). Dovecot moves messages to `cur/` as soon as an IMAP client
//! opens the folder, read or not. So this source produces, like an IMAP source searching
//! `UNSEEN`:
//!
//! * every file in `new/`, and
//! * every file in `cur/` without the `S`, `T` or `F` flag.
//!
//! `F` is the failure marker: a message whose task was dead-lettered is moved to `cur/`
//! with `F` (shown as flagged, "needs attention", in every mail client) and is not
//! produced again until an operator retries the dead letter (the acknowledger then files
//! it as done) or clears the flag. The cost of that choice: an unread message a person
//! flagged by hand in `cur/` is not produced either.
//!
//! ## Acknowledgement
//!
//! The task's origin key is the message's *unique name* (the file name before `:2,`),
//! which survives every move; a name that is not UTF-8 or holds a `\` gets an escaped
//! key ([`key_of`]), and the file keeps its name on disk. [`MaildirAcknowledger`] finds the file wherever it is now
//! (`new/`, `cur/` or a configured sub-folder) and renames it — atomic on one
//! filesystem, and idempotent: a file already where it should be is left alone.
//!
//! * `Succeeded` -> `cur/<unique>:2,S` (plus earlier flags), in the Maildir++ sub-folder
//!   `.<processed_folder>` if set; with the tag `rejected` and `rejected_folder` set, in
//!   `.<rejected_folder>` instead.
//! * `DeadLettered` -> `cur/<unique>:2,F`, in `.<failed_folder>` if set.
//!
//! ## Finding changes
//!
//! A `notify` watcher on `new/` and `cur/` triggers a scan at once; a periodic rescan
//! (`poll_interval`) is the safety net for lost events, network filesystems and a watcher
//! that could not start. A message published recently is not read again on every scan: it
//! is re-published only after `republish_after`, and the queue refuses a second live task
//! for the same origin anyway. Oversized messages (`max_message_bytes`) are published as
//! their header only, with the task header [`OVERSIZE_HEADER`] giving the size. A batch
//! holds at most 100 messages and `max_batch_bytes` (16 MiB) of them; a larger message
//! goes alone. A directory is read again only when its modification time changed, so an
//! idle source with a large handled backlog in `cur/` costs a `stat` per scan (status
//! detail `listings` counts full readings).
//!
//! ## Nothing skipped silently
//!
//! Every entry of `new/` and `cur/` but hidden ones is a candidate. A symlink is followed
//! to a regular file inside the Maildir only. An entry that cannot be read (a directory,
//! a dangling or looping link, a link leading outside) is logged once per version of the
//! entry, counted in the status's `errors`, and shown in the status detail `failed` while
//! it waits; it is read again once it changes. A dead letter whose file cannot be filed
//! (a name too long for its flags) is reported the same way instead of produced again.

mod ack;
mod config;
mod maildir;
mod source;

pub use ack::MaildirAcknowledger;
pub use config::MaildirConfig;
pub use maildir::{Maildir, MessageFile, key_of, unique_name};
pub use source::MaildirSource;

/// The task route of Maildir tasks.
pub const ROUTE: &str = "maildir";

/// Task header set on an oversized message: its size in bytes (the payload is then the
/// message header only); and the outcome tag that files a message in `rejected_folder`.
/// Both are the contracts', shared by every source and handler.
pub use runtime_contracts::{OVERSIZE_HEADER, REJECTED_TAG};
