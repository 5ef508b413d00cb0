//! Filing messages by outcome.

use std::sync::Arc;

use runtime_adapters_maildir::{MaildirAcknowledger, MaildirConfig, REJECTED_TAG};
use runtime_contracts::{FinalOutcome, SourceAcknowledger};

use crate::support::{deliver, make_dirs, message, names};

fn succeeded(tag: Option<&str>) -> FinalOutcome {
    FinalOutcome::Succeeded {
        tag: tag.map(str::to_owned),
    }
}

fn dead() -> FinalOutcome {
    FinalOutcome::DeadLettered {
        reason: "boom".into(),
    }
}

#[tokio::test]
async fn success_marks_seen_in_cur_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    deliver(&md, "1.A.h", &message("a"));
    std::fs::write(md.join("cur/2.B.h:2,R"), message("b")).unwrap();
    let ack = MaildirAcknowledger::new(Arc::new(MaildirConfig::new(&md)));

    ack.acknowledge("1.A.h", &succeeded(None)).await.unwrap();
    ack.acknowledge("1.A.h", &succeeded(None)).await.unwrap();
    // Existing flags are kept and stay sorted.
    ack.acknowledge("2.B.h", &succeeded(Some(REJECTED_TAG)))
        .await
        .unwrap();
    assert_eq!(names(&md.join("new")), Vec::<String>::new());
    assert_eq!(names(&md.join("cur")), vec!["1.A.h:2,S", "2.B.h:2,RS"]);

    // Unknown (already deleted) message: nothing to do, not an error.
    ack.acknowledge("9.Z.h", &succeeded(None)).await.unwrap();
    // A key that would escape the Maildir is refused.
    assert!(ack.acknowledge("../x", &succeeded(None)).await.is_err());
}

#[tokio::test]
async fn dead_letters_are_flagged_and_a_retried_success_clears_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    deliver(&md, "1.A.h", &message("a"));
    let ack = MaildirAcknowledger::new(Arc::new(MaildirConfig::new(&md)));
    ack.acknowledge("1.A.h", &dead()).await.unwrap();
    ack.acknowledge("1.A.h", &dead()).await.unwrap();
    assert_eq!(names(&md.join("cur")), vec!["1.A.h:2,F"]);
    // An operator retried the dead letter and it went through.
    ack.acknowledge("1.A.h", &succeeded(None)).await.unwrap();
    assert_eq!(names(&md.join("cur")), vec!["1.A.h:2,S"]);
}

#[tokio::test]
async fn folders_file_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    for u in ["1.ok.h", "2.rej.h", "3.dead.h"] {
        deliver(&md, u, &message(u));
    }
    let mut config = MaildirConfig::new(&md);
    config.processed_folder = "Processed".into();
    config.rejected_folder = "Rejected".into();
    config.failed_folder = "Failed".into();
    let ack = MaildirAcknowledger::new(Arc::new(config));
    ack.acknowledge("1.ok.h", &succeeded(None)).await.unwrap();
    ack.acknowledge("2.rej.h", &succeeded(Some(REJECTED_TAG)))
        .await
        .unwrap();
    ack.acknowledge("3.dead.h", &dead()).await.unwrap();
    ack.acknowledge("3.dead.h", &dead()).await.unwrap();
    assert_eq!(names(&md.join("new")), Vec::<String>::new());
    assert_eq!(names(&md.join(".Processed/cur")), vec!["1.ok.h:2,S"]);
    assert_eq!(names(&md.join(".Rejected/cur")), vec!["2.rej.h:2,S"]);
    assert_eq!(names(&md.join(".Failed/cur")), vec!["3.dead.h:2,F"]);
    assert!(md.join(".Failed/tmp").is_dir() && md.join(".Failed/new").is_dir());

    // Retried from the dead-letter set: found in the failed folder, filed as processed.
    ack.acknowledge("3.dead.h", &succeeded(None)).await.unwrap();
    assert_eq!(names(&md.join(".Failed/cur")), Vec::<String>::new());
    assert_eq!(
        names(&md.join(".Processed/cur")),
        vec!["1.ok.h:2,S", "3.dead.h:2,S"]
    );
}

#[tokio::test]
async fn concurrent_acknowledgements_of_one_message_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    deliver(&md, "1.A.h", &message("a"));
    let mut config = MaildirConfig::new(&md);
    config.processed_folder = "Done".into();
    let ack = Arc::new(MaildirAcknowledger::new(Arc::new(config)));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let ack = ack.clone();
            tokio::spawn(async move { ack.acknowledge("1.A.h", &succeeded(None)).await })
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(names(&md.join(".Done/cur")), vec!["1.A.h:2,S"]);
    assert_eq!(names(&md.join("new")), Vec::<String>::new());
}
