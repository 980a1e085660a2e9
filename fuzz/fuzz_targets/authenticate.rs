//! Authentication + selection on arbitrary certificate bytes (records of `[u16 len][DER]`, the
//! first being the device leaf) against the fixed fixture groups. Never panics; whatever is
//! accepted is a chain of real fixture certificates (no forgery gets in), starts with the
//! presented leaf, and ends in a configured root of the selected group.
#![no_main]

use dps_fuzz::{arena, known_tbs, now, split_records, tbs_of};
use dps_server::enrollment::Verdict;
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

fuzz_target!(|data: &[u8]| {
    let presented: Vec<CertificateDer<'_>> = split_records(data)
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let snapshot = arena().load();
    let verdict = snapshot.authenticate(&presented, now());
    if let Verdict::Accepted(acc) = verdict {
        assert_eq!(
            acc.chain.first().map(|c| c.as_ref()),
            presented.first().map(|c| c.as_ref())
        );
        for c in &acc.chain {
            let tbs = tbs_of(c).expect("a certificate of a verified chain parses");
            assert!(
                known_tbs().contains(&tbs),
                "accepted a certificate no fixture key signed"
            );
        }
        let group = snapshot.group(&acc.group).expect("selected group exists");
        let root = acc.chain.last().expect("non-empty chain");
        assert_eq!(
            Some(root.as_ref()),
            group.certs.last().map(|c| c.der.as_ref()),
            "verified chain ends in the selected group's root"
        );
        assert!(!group.deny.contains(&acc.common_name));
    }
});
