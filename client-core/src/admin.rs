//! The relay's admin API, for provisioning tools (the `cascade admin`
//! commands). Authenticated with the relay's admin token.

use cascade_protocol::http::{
    CreateOrg, CreateUser, EnrolmentToken, HttpError, IssueEnrolmentToken,
};
use cascade_protocol::{OrgId, UserEntry, UserId};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The relay could not be reached.
    #[error("relay unreachable: {0}")]
    Unreachable(String),
    /// The relay refused the call; `code` is its stable error code.
    #[error("{message} ({code})")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Stable machine-readable code, e.g. `unauthorized`, `conflict`.
        code: String,
        /// Explanation.
        message: String,
    },
}

/// A client of the relay's admin API.
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// An admin client for the relay at `server_url` (e.g.
    /// `http://127.0.0.1:7171`) with its admin token.
    pub fn new(server_url: &str, token: &str) -> Self {
        Self {
            base: server_url.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, AdminError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| AdminError::Unreachable(e.without_url().to_string()))?;
        Self::answer(resp).await
    }

    async fn answer<R: DeserializeOwned>(resp: reqwest::Response) -> Result<R, AdminError> {
        let status = resp.status();
        if !status.is_success() {
            let (code, message) = match resp.json::<HttpError>().await {
                Ok(e) => (e.code, e.message),
                Err(_) => ("http".into(), status.to_string()),
            };
            return Err(AdminError::Refused {
                status: status.as_u16(),
                code,
                message,
            });
        }
        let text = resp
            .text()
            .await
            .map_err(|e| AdminError::Unreachable(e.without_url().to_string()))?;
        serde_json::from_str(if text.trim().is_empty() {
            "null"
        } else {
            &text
        })
        .map_err(|_| AdminError::Refused {
            status: status.as_u16(),
            code: "bad_response".into(),
            message: "unexpected answer from the relay".into(),
        })
    }

    /// Creates an organisation.
    pub async fn create_org(&self, org_id: &OrgId, display_name: &str) -> Result<(), AdminError> {
        self.post::<_, serde_json::Value>(
            "/v1/admin/orgs",
            &CreateOrg {
                org_id: org_id.clone(),
                display_name: display_name.to_owned(),
            },
        )
        .await
        .map(|_| ())
    }

    /// Creates a user in an existing organisation.
    pub async fn create_user(
        &self,
        user_id: &UserId,
        display_name: &str,
        role: &str,
    ) -> Result<(), AdminError> {
        self.post::<_, serde_json::Value>(
            "/v1/admin/users",
            &CreateUser {
                user_id: user_id.clone(),
                display_name: display_name.to_owned(),
                role: role.to_owned(),
            },
        )
        .await
        .map(|_| ())
    }

    /// Issues a one-time enrolment token for one device of the user.
    pub async fn issue_enrolment_token(
        &self,
        user_id: &UserId,
        ttl_secs: Option<u64>,
    ) -> Result<EnrolmentToken, AdminError> {
        self.post(
            "/v1/admin/enrolment-tokens",
            &IssueEnrolmentToken {
                user_id: user_id.clone(),
                ttl_secs,
            },
        )
        .await
    }

    /// Lists an organisation's users.
    pub async fn list_users(&self, org_id: &OrgId) -> Result<Vec<UserEntry>, AdminError> {
        let resp = self
            .http
            .get(format!("{}/v1/admin/orgs/{org_id}/users", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| AdminError::Unreachable(e.without_url().to_string()))?;
        Self::answer(resp).await
    }
}
