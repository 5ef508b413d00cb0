//! Task headers: the string name/value pairs a task carries across queues.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// String headers of a task. A small vector, not a map: tasks carry a handful of
/// headers (the trace context), and a vector costs one allocation instead of a B-tree
/// node per task. Names are usually constants, so they are kept as `Cow<'static, str>`
/// and cost nothing to set or clone.
#[derive(Clone, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Headers(Vec<(Cow<'static, str>, String)>);

impl Headers {
    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`, replacing an earlier value.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Removes `name` and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|(k, _)| k == name)?;
        // Keeps the sequence: a task written and read back compares equal.
        Some(self.0.remove(at).1)
    }

    /// True when there is no header.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All headers, first set first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// Approximate heap bytes held by the headers (see [`Task::heap_bytes`](crate::Task::heap_bytes)).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<(Cow<'static, str>, String)>()
            + self
                .0
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Cow::Borrowed(_) => 0,
                        Cow::Owned(k) => k.capacity(),
                    };
                    key + v.capacity()
                })
                .sum::<usize>()
    }
}
