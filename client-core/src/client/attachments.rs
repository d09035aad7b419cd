//! Sending and saving files (protocol §3.6, §14.10): sealed on the device
//! ([`crate::attachments`]), uploaded to the relay's blob store in pieces
//! (a broken upload resumes where the relay got to), then sent as a
//! message; fetched, checked against the message's digest and opened to
//! where the user saves it. Progress goes out as [`Event::Transfer`]. No
//! file is ever held whole in memory: the sealed copy waits in the data
//! directory (`outgoing/`, `incoming/`) and is deleted when done.

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use cascade_protocol::GroupId;
use tokio::io::AsyncWriteExt;

use super::Client;
use crate::attachments::{self, Sealed};
use crate::content::{Attachment, MessageId};
use crate::engine::{Answer, Event};
use crate::error::{CoreError, InvalidInput, Result};

/// Octets of the sealed file in one upload request.
pub const PIECE: usize = 1024 * 1024;

/// How many times a transfer asks for a fresh ticket and resumes before it
/// gives up.
const ATTEMPTS: usize = 5;

/// The media type for a file name's extension (the common ones on a ward);
/// `application/octet-stream` otherwise.
pub fn media_type_of(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

fn file_error(e: impl std::fmt::Display) -> CoreError {
    InvalidInput::File(e.to_string()).into()
}

/// A relay answer to a blob request that is not a ticket.
fn refused(answer: Option<Answer>) -> CoreError {
    match answer {
        Some(Answer::Refused(e)) => CoreError::Relay(e),
        Some(_) | None => CoreError::Offline,
    }
}

impl Client {
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.db.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    fn blob_url(&self, digest: &[u8; 32]) -> String {
        format!(
            "{}/v1/blobs/{}",
            self.identity.server_url.trim_end_matches('/'),
            hex::encode(digest)
        )
    }

    fn http(&self) -> Result<reqwest::Client> {
        Ok(crate::transport::http_client(
            &self.identity.server_url,
            self.identity.server_ca.as_deref(),
        )?)
    }

    fn transfer(&self, group_id: GroupId, name: &str, done: u64, total: u64, upload: bool) {
        let _ = self.events.send(Event::Transfer {
            group_id,
            name: name.to_owned(),
            done,
            total,
            upload,
        });
    }

    /// Sends the file at `path` to a conversation (with a room): sealed,
    /// uploaded (with [`Event::Transfer`] progress), then sent as a message
    /// with `caption`. The message appears once the file is at the relay;
    /// an upload that fails is an error here, never a message that cannot
    /// be opened.
    pub async fn send_file(
        &self,
        group: GroupId,
        path: &Path,
        media_type: Option<&str>,
        caption: &str,
    ) -> Result<MessageId> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| file_error("the path names no file"))?
            .to_owned();
        let media_type = media_type.unwrap_or(media_type_of(&name)).to_owned();
        let outgoing = self.data_dir().join("outgoing");
        std::fs::create_dir_all(&outgoing).map_err(file_error)?;
        let sealed_path =
            outgoing.join(format!("{}.sealed", hex::encode(rand::random::<[u8; 8]>())));
        let (source, target) = (path.to_owned(), sealed_path.clone());
        let sealed = tokio::task::spawn_blocking(move || -> std::io::Result<Sealed> {
            let src = std::io::BufReader::new(std::fs::File::open(source)?);
            let mut dst = std::fs::File::create(&target)?;
            let sealed = attachments::seal(src, &mut dst, |_| {})?;
            dst.sync_all()?;
            Ok(sealed)
        })
        .await
        .map_err(|_| file_error("sealing stopped"))?
        .map_err(file_error);
        let result = match sealed {
            Ok(sealed) => {
                let s = sealed.clone();
                self.upload_blob(
                    || {
                        let s = s.clone();
                        self.query(move |e, _| e.post_blob(&group, &s))
                    },
                    &sealed_path,
                    &sealed.digest,
                    sealed.size,
                    |done| self.transfer(group, &name, done, sealed.size, true),
                )
                .await
                .map(|()| sealed)
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&sealed_path);
        let sealed = result?;
        let attachment = Attachment {
            url: self.blob_url(&sealed.digest),
            digest: sealed.digest,
            key: *sealed.key,
            size: sealed.size,
            media_type,
            name,
            caption: caption.to_owned(),
        };
        self.call(move |e, now| e.send_attachment(&group, attachment, now))
            .await
    }

    /// Uploads the sealed file at `path` (`size` octets, SHA-256
    /// `digest`), resuming where the relay got to; `ticket` asks the relay
    /// for a ticket (`PostBlob` or `PostOwnBlob`), `progress` hears the
    /// octets the relay has.
    pub(crate) async fn upload_blob<T, F>(
        &self,
        ticket: T,
        path: &Path,
        digest: &[u8; 32],
        size: u64,
        progress: impl Fn(u64),
    ) -> Result<()>
    where
        T: Fn() -> F,
        F: std::future::Future<Output = Result<Option<Answer>>>,
    {
        let http = self.http()?;
        let url = self.blob_url(digest);
        let mut last_error = CoreError::Offline;
        for _ in 0..ATTEMPTS {
            let (token, mut offset) = match ticket().await? {
                Some(Answer::BlobTicket { token, offset, .. }) => (token, offset),
                other => return Err(refused(other)),
            };
            let auth = format!("Bearer {}", hex::encode(token));
            let mut file = std::fs::File::open(path).map_err(file_error)?;
            file.seek(SeekFrom::Start(offset)).map_err(file_error)?;
            progress(offset);
            let mut piece = vec![0u8; PIECE];
            loop {
                if offset >= size {
                    return Ok(());
                }
                let n = attachments::fill(&mut file, &mut piece).map_err(file_error)?;
                let answer = http
                    .put(format!("{url}?offset={offset}"))
                    .header(reqwest::header::AUTHORIZATION, &auth)
                    .body(piece[..n].to_vec())
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().is_success() => {
                        let at: UploadAnswer = r.json().await.map_err(file_error)?;
                        offset = at.offset;
                        progress(offset);
                        if at.complete {
                            return Ok(());
                        }
                        file.seek(SeekFrom::Start(offset)).map_err(file_error)?;
                    }
                    // Refused for good: the relay said why.
                    Ok(r) if r.status().as_u16() == 413 || r.status().as_u16() == 400 => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        return Err(file_error(format!(
                            "the relay refused the file ({status}): {body}"
                        )));
                    }
                    // A broken connection, an expired ticket, a wrong
                    // offset: ask again where to go on.
                    Ok(r) => {
                        last_error = file_error(format!("the upload broke off ({})", r.status()));
                        break;
                    }
                    Err(e) => {
                        last_error = file_error(format!("the upload broke off: {e}"));
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// Saves the file a message carries to `dest`: fetched from the relay
    /// (with [`Event::Transfer`] progress, resuming a download that broke
    /// off), checked against the message's digest and opened. `dest` is
    /// written only when the whole file opened. Returns its size.
    pub async fn save_attachment(
        &self,
        group: GroupId,
        message: MessageId,
        dest: &Path,
    ) -> Result<u64> {
        let a = self
            .call(move |e, _| e.attachment(&group, &message))
            .await?;
        let incoming = self.data_dir().join("incoming");
        std::fs::create_dir_all(&incoming).map_err(file_error)?;
        let sealed_path = incoming.join(format!("{}.sealed", hex::encode(a.digest)));
        self.download_blob(
            || self.query(move |e, _| e.get_blob(&group, &message)),
            &a.digest,
            a.size,
            &sealed_path,
            |done| self.transfer(group, &a.name, done, a.size, false),
        )
        .await?;
        let tmp = dest.with_extension("cascade-part");
        let (src, out, key, digest) = (sealed_path.clone(), tmp.clone(), a.key, a.digest);
        let opened = tokio::task::spawn_blocking(
            move || -> std::result::Result<u64, attachments::OpenError> {
                let f = std::io::BufReader::new(std::fs::File::open(src)?);
                let mut out = std::fs::File::create(&out)?;
                let n = attachments::open(f, &mut out, &key, &digest, |_| {})?;
                out.sync_all()?;
                Ok(n)
            },
        )
        .await
        .map_err(|_| file_error("opening stopped"))?;
        let _ = std::fs::remove_file(&sealed_path);
        match opened {
            Ok(n) => {
                std::fs::rename(&tmp, dest).map_err(file_error)?;
                Ok(n)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(file_error(e))
            }
        }
    }

    /// Fetches the sealed file (`size` octets, SHA-256 `digest`) to
    /// `path`, resuming from what it holds; `ticket` asks the relay for a
    /// ticket (`GetBlob`), `progress` hears the octets fetched.
    pub(crate) async fn download_blob<T, F>(
        &self,
        ticket: T,
        digest: &[u8; 32],
        size: u64,
        path: &Path,
        progress: impl Fn(u64),
    ) -> Result<()>
    where
        T: Fn() -> F,
        F: std::future::Future<Output = Result<Option<Answer>>>,
    {
        let http = self.http()?;
        let url = self.blob_url(digest);
        let mut last_error = CoreError::Offline;
        for _ in 0..ATTEMPTS {
            let mut have = std::fs::metadata(path).map_or(0, |m| m.len());
            if have >= size {
                return Ok(());
            }
            let token = match ticket().await? {
                Some(Answer::BlobTicket { token, .. }) => token,
                other => return Err(refused(other)),
            };
            let answer = http
                .get(&url)
                .header(
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {}", hex::encode(token)),
                )
                .header(reqwest::header::RANGE, format!("bytes={have}-"))
                .send()
                .await;
            let mut r = match answer {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    last_error = file_error(format!("the relay answered {}", r.status()));
                    continue;
                }
                Err(e) => {
                    last_error = file_error(format!("the download broke off: {e}"));
                    continue;
                }
            };
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(file_error)?;
            progress(have);
            loop {
                match r.chunk().await {
                    Ok(Some(chunk)) => {
                        if have + chunk.len() as u64 > size {
                            // More than the message said: not this file.
                            drop(file);
                            let _ = std::fs::remove_file(path);
                            return Err(file_error("the relay sent more than the file holds"));
                        }
                        file.write_all(&chunk).await.map_err(file_error)?;
                        have += chunk.len() as u64;
                        progress(have);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        last_error = file_error(format!("the download broke off: {e}"));
                        break;
                    }
                }
            }
            file.flush().await.map_err(file_error)?;
            if have >= size {
                return Ok(());
            }
        }
        Err(last_error)
    }
}

/// The relay's answer to an upload piece (protocol §3.6).
#[derive(serde::Deserialize)]
struct UploadAnswer {
    offset: u64,
    complete: bool,
}
