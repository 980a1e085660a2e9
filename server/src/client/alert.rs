//! The refusal a device reads from the alert its handshake or session ended with: the client's
//! side of the one table in [`crate::tls::refusal`].

use rustls::AlertDescription;

use crate::enrollment::RejectReason;
use crate::tls::refusal;

/// The alert the server sent, if that is what ended the TLS stream `e` came from.
pub fn received_alert(e: &std::io::Error) -> Option<AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// rustls's name of the alert a device refused for `reason` receives (e.g. `UnknownCA`).
pub fn expected_alert(reason: RejectReason) -> &'static str {
    refusal::alert(reason).as_str().unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_is_read_from_the_io_error_of_a_tls_stream() {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        );
        assert_eq!(received_alert(&e), Some(AlertDescription::UnknownCA));
        assert_eq!(
            format!("{:?}", AlertDescription::UnknownCA),
            expected_alert(RejectReason::NoPath)
        );
        let other =
            std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(received_alert(&other), None);
        assert_eq!(
            received_alert(&std::io::ErrorKind::ConnectionReset.into()),
            None
        );
    }
}
