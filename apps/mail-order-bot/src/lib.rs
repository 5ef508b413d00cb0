//! mail-order-bot (work in progress).
