//! What a connection reports of one answered provisioning step ([`StepEvent`]), and how an event
//! or an issued identity is merged into its provisioning record: the record writer queues the
//! events, the database applies them in its batch transaction.

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::enrollment::CertId;
use crate::proto::coap::Code;
use crate::provision::IdentityHolder;
use crate::records::{ProvisioningRecord, Step, StepResult};

/// The identity certificate a credentials step issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuedIdentity {
    /// The device id (CN of the CSR).
    pub device_id: Uuid,
    /// Fingerprint of the identity certificate.
    pub certificate: CertId,
    /// Its expiry.
    pub not_after: OffsetDateTime,
}

/// What a batch did with one device id changed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityOutcome {
    /// The device id.
    pub device: Uuid,
    /// Its holders as stored now (when refused: as another replica stored them).
    pub holders: Vec<IdentityHolder>,
    /// The change was refused: another replica took the id (or another key for it) meanwhile.
    pub refused: bool,
}

/// One answered provisioning request, as the connection reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEvent {
    /// The device's record: fingerprint of its manufacturer (leaf) certificate.
    pub record: CertId,
    /// The manufacturer certificate's CN; `None` keeps the record's (identity-certificate
    /// sessions do not know it).
    pub common_name: Option<String>,
    /// The enrollment group of the session.
    pub group: Uuid,
    /// Which step.
    pub step: Step,
    /// The response code.
    pub code: Code,
    /// The diagnostic of an error response.
    pub diagnostic: String,
    /// For a successful credentials step: what was issued.
    pub issued: Option<IssuedIdentity>,
    /// For a successful cloud configuration: the access token's provider and expiry.
    pub token: Option<crate::token::TokenInfo>,
    /// When the request was answered.
    pub at: OffsetDateTime,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Move `last_seen` forward to `at` (never back).
fn seen(record: &mut ProvisioningRecord, at: OffsetDateTime) {
    if parse_rfc3339(&record.last_seen).is_none_or(|last| at > last) {
        record.last_seen = rfc3339(at);
    }
}

fn empty_record(
    key: String,
    common_name: String,
    group: Uuid,
    at: OffsetDateTime,
) -> ProvisioningRecord {
    ProvisioningRecord {
        key,
        common_name,
        group,
        device_id: None,
        identity_certificate: None,
        identity_not_after: None,
        token_provider: None,
        token_expires_at: None,
        steps: BTreeMap::new(),
        first_seen: rfc3339(at),
        last_seen: rfc3339(at),
    }
}

/// Apply one event to its record (a new record when there is none yet).
pub(super) fn merge(current: Option<ProvisioningRecord>, event: &StepEvent) -> ProvisioningRecord {
    let mut record = current.unwrap_or_else(|| {
        empty_record(
            event.record.to_string(),
            event.common_name.clone().unwrap_or_default(),
            event.group,
            event.at,
        )
    });
    if let Some(cn) = &event.common_name {
        record.common_name.clone_from(cn);
    }
    record.group = event.group;
    if let Some(issued) = &event.issued {
        record.device_id = Some(issued.device_id);
        record.identity_certificate = Some(issued.certificate.to_string());
        record.identity_not_after = Some(rfc3339(issued.not_after));
    }
    if let Some(token) = &event.token {
        record.token_provider = Some(token.provider.as_str().to_owned());
        record.token_expires_at = token.expires_at.map(rfc3339);
    }
    record.steps.insert(
        event.step,
        StepResult {
            at: rfc3339(event.at),
            code: event.code.to_string(),
            diagnostic: event.diagnostic.clone(),
        },
    );
    seen(&mut record, event.at);
    record
}

/// Bring a record in line with an identity issued for it whose credentials event never made it
/// (dropped from a full queue); `None` when the record already reflects it or something later.
pub(super) fn reconcile(
    current: Option<&ProvisioningRecord>,
    device: Uuid,
    holder: &IdentityHolder,
) -> Option<ProvisioningRecord> {
    let up_to_date = current
        .and_then(|r| r.steps.get(&Step::Credentials))
        .and_then(|s| parse_rfc3339(&s.at))
        .is_some_and(|at| at >= holder.issued_at);
    if up_to_date {
        return None;
    }
    let key = holder.record?.to_string();
    let mut record = match current {
        Some(r) => r.clone(),
        None => empty_record(key, String::new(), holder.group, holder.issued_at),
    };
    record.group = holder.group;
    record.device_id = Some(device);
    record.identity_certificate = Some(holder.certificate.to_string());
    record.identity_not_after = Some(rfc3339(holder.not_after));
    record.steps.insert(
        Step::Credentials,
        StepResult {
            at: rfc3339(holder.issued_at),
            code: Code::CHANGED.to_string(),
            diagnostic: String::new(),
        },
    );
    seen(&mut record, holder.issued_at);
    Some(record)
}
