//! Sending and saving files (protocol §3.6, §14.10): sealed on the device
//! ([`crate::attachments`]), uploaded to the relay's blob store in pieces
//! (a broken upload resumes where the relay got to), then sent as a
//! message; fetched, checked against the message's digest and opened to
//! where the user saves it. Progress goes out as [`Event::Transfer`]. No
//! file is ever held whole in memory: the sealed copy waits in the data
//! directory (`outgoing/`, `incoming/`) and is deleted when done.

use std::io::{Read, Seek, SeekFrom};
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
    fn data_dir(&self) -> PathBuf {
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
            Ok(sealed) => self
                .upload(group, &name, &sealed_path, &sealed)
                .await
                .map(|()| sealed),
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

    /// Uploads the sealed file, resuming where the relay got to.
    async fn upload(&self, group: GroupId, name: &str, path: &Path, sealed: &Sealed) -> Result<()> {
        let http = self.http()?;
        let url = self.blob_url(&sealed.digest);
        let mut last_error = CoreError::Offline;
        for _ in 0..ATTEMPTS {
            let s = sealed.clone();
            let (token, mut offset) = match self.query(move |e, _| e.post_blob(&group, &s)).await? {
                Some(Answer::BlobTicket { token, offset, .. }) => (token, offset),
                other => return Err(refused(other)),
            };
            let auth = format!("Bearer {}", hex::encode(token));
            let mut file = std::fs::File::open(path).map_err(file_error)?;
            file.seek(SeekFrom::Start(offset)).map_err(file_error)?;
            self.transfer(group, name, offset, sealed.size, true);
            let mut piece = vec![0u8; PIECE];
            loop {
                if offset >= sealed.size {
                    return Ok(());
                }
                let n = read_full(&mut file, &mut piece).map_err(file_error)?;
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
                        self.transfer(group, name, offset, sealed.size, true);
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
        self.download(group, message, &a, &sealed_path).await?;
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

    /// Fetches the sealed file to `path`, resuming from what it holds.
    async fn download(
        &self,
        group: GroupId,
        message: MessageId,
        a: &Attachment,
        path: &Path,
    ) -> Result<()> {
        let http = self.http()?;
        let url = self.blob_url(&a.digest);
        let mut last_error = CoreError::Offline;
        for _ in 0..ATTEMPTS {
            let mut have = std::fs::metadata(path).map_or(0, |m| m.len());
            if have >= a.size {
                return Ok(());
            }
            let token = match self.query(move |e, _| e.get_blob(&group, &message)).await? {
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
            self.transfer(group, &a.name, have, a.size, false);
            loop {
                match r.chunk().await {
                    Ok(Some(chunk)) => {
                        if have + chunk.len() as u64 > a.size {
                            // More than the message said: not this file.
                            drop(file);
                            let _ = std::fs::remove_file(path);
                            return Err(file_error("the relay sent more than the file holds"));
                        }
                        file.write_all(&chunk).await.map_err(file_error)?;
                        have += chunk.len() as u64;
                        self.transfer(group, &a.name, have, a.size, false);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        last_error = file_error(format!("the download broke off: {e}"));
                        break;
                    }
                }
            }
            file.flush().await.map_err(file_error)?;
            if have >= a.size {
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

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
