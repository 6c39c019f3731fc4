//! S3 request signing (AWS Signature Version 4, with the aws-sigv4 crate): the headers a GET of
//! an object carries so that S3, or an S3-compatible server, accepts it.
//!
//! The path is signed exactly as it is sent (percent-encoded once, by whoever builds the
//! request line, never normalized), the payload hash goes in `x-amz-content-sha256` (S3 requires
//! it), and a session token (`s3_security_token`) is sent and signed as
//! `x-amz-security-token`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// What signs a location's requests.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Signer {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    pub region: String,
}

impl std::fmt::Debug for S3Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log line.
        f.debug_struct("S3Signer")
            .field("access_key", &self.access_key)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the S3 request for {url}: {what}")]
pub struct SignError {
    pub url: String,
    pub what: String,
}

impl S3Signer {
    /// The headers to add to a GET of `url` (scheme, host, port as sent in `Host`, and the path
    /// as sent) that also sends `headers` (signed too, e.g. `range`), at `time`.
    pub fn sign_get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, SignError> {
        sign_request(self, "s3", true, "GET", url, headers, time)
    }

    /// [`S3Signer::sign_get`] for a read made with `method` (`GET` or `HEAD`: a client's
    /// progressive download is passed on with its own method).
    pub fn sign_read(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, SignError> {
        if method != "GET" && method != "HEAD" {
            return Err(SignError {
                url: url.to_string(),
                what: format!("{method} is not a read"),
            });
        }
        sign_request(self, "s3", true, method, url, headers, time)
    }
}

fn sign_request(
    signer: &S3Signer,
    service: &str,
    payload_header: bool,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    time: SystemTime,
) -> Result<Vec<(String, String)>, SignError> {
    let failed = |what: String| SignError {
        url: url.to_string(),
        what,
    };
    let identity: Identity = Credentials::new(
        &signer.access_key,
        &signer.secret_key,
        signer.session_token.clone(),
        None,
        "ngx-origin",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    if payload_header {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&signer.region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| failed(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| failed(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| failed(e.to_string()))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(unix: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    }

    /// The AWS SigV4 test suite's `get-vanilla`: GET / of example.amazonaws.com, service
    /// "service", 2015-08-30T12:36:00Z.
    #[test]
    fn sigv4_test_suite_get_vanilla() {
        let signer = S3Signer {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
            region: "us-east-1".into(),
        };
        let headers = sign_request(
            &signer,
            "service",
            false,
            "GET",
            "https://example.amazonaws.com/",
            &[],
            at(1_440_938_160),
        )
        .unwrap();
        assert_eq!(header(&headers, "x-amz-date"), "20150830T123600Z");
        assert_eq!(
            header(&headers, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// Amazon S3's documented example: GET /test.txt of examplebucket with `Range: bytes=0-9`,
    /// 2013-05-24T00:00:00Z.
    #[test]
    fn s3_documented_get_object_with_range() {
        let signer = S3Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
            region: "us-east-1".into(),
        };
        let headers = signer
            .sign_get(
                "https://examplebucket.s3.amazonaws.com/test.txt",
                &[("range", "bytes=0-9")],
                at(1_369_353_600),
            )
            .unwrap();
        assert_eq!(
            header(&headers, "x-amz-content-sha256"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            header(&headers, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn reads_are_signed_with_their_own_method() {
        let signer = S3Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "secret".into(),
            session_token: None,
            region: "us-east-1".into(),
        };
        let url = "http://127.0.0.1:9000/bucket/a.mp4";
        let get = signer.sign_get(url, &[], at(1_369_353_600)).unwrap();
        let read = |m| signer.sign_read(m, url, &[], at(1_369_353_600));
        assert_eq!(read("GET").unwrap(), get);
        assert_ne!(
            header(&read("HEAD").unwrap(), "authorization"),
            header(&get, "authorization")
        );
        let e = read("DELETE").unwrap_err().to_string();
        assert!(e.ends_with("DELETE is not a read"), "{e}");
    }

    #[test]
    fn session_tokens_are_sent_and_signed_and_paths_signed_as_sent() {
        let signer = S3Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "secret".into(),
            session_token: Some("token/with+chars".into()),
            region: "eu-west-1".into(),
        };
        let headers = signer
            .sign_get(
                "http://127.0.0.1:9000/bucket/a%20b.mp4",
                &[],
                at(1_700_000_000),
            )
            .unwrap();
        assert_eq!(header(&headers, "x-amz-security-token"), "token/with+chars");
        let auth = header(&headers, "authorization");
        assert!(auth.contains("/eu-west-1/s3/aws4_request"), "{auth}");
        assert!(auth.contains("x-amz-security-token"), "{auth}");
        // Encoded once: a different spelling of the same path signs differently.
        let twice = signer
            .sign_get(
                "http://127.0.0.1:9000/bucket/a%2520b.mp4",
                &[],
                at(1_700_000_000),
            )
            .unwrap();
        assert_ne!(header(&twice, "authorization"), auth);
        assert!(
            format!("{signer:?}").contains("AKIA") && !format!("{signer:?}").contains("secret\"")
        );
    }
}
