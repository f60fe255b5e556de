//! `--bless`: a session written anew with what the live peer sent in place of the
//! recorded peer messages (to author a session: write one side, let a trusted
//! implementation give the other, review it).

use std::fs;

use syncml_core::transcript::{Recorder, Side, Transcript};
use syncml_core::{decode, encode, Encoding};

use crate::exchange::Incoming;

/// A live message with the live server's address put back to the recorded one.
fn as_recorded(inc: &Incoming, live_origin: &str, rec_origin: &str) -> Vec<u8> {
    let Ok(msg) = decode(&inc.body) else {
        return inc.body.clone();
    };
    let wbxml = Encoding::detect(&inc.body).ok() == Some(Encoding::Wbxml);
    let Ok(xml) = encode(&msg, Encoding::Xml) else {
        return inc.body.clone();
    };
    let text = String::from_utf8_lossy(&xml);
    let text = if live_origin.is_empty() || rec_origin.is_empty() {
        text.into_owned()
    } else {
        text.replace(live_origin, rec_origin)
    };
    if !wbxml {
        return text.into_bytes();
    }
    decode(text.as_bytes())
        .ok()
        .and_then(|m| encode(&m, Encoding::Wbxml).ok())
        .unwrap_or_else(|| inc.body.clone())
}

/// Rewrites the session folder: the replay's own messages as they were, the peer's
/// from `live` (by position), the rest of the manifest kept.
pub fn write(
    t: &Transcript,
    me: Side,
    live: &[(usize, Incoming)],
    live_origin: &str,
    rec_origin: &str,
) -> Result<usize, String> {
    let name = t.manifest.name.clone();
    let parent = t
        .dir
        .parent()
        .ok_or("the session folder has no parent")?
        .to_owned();
    let tmp_name = format!(".bless-{name}");
    let _ = fs::remove_dir_all(parent.join(&tmp_name));
    let mut rec =
        Recorder::create(&parent, &tmp_name, &t.manifest.recorded_by).map_err(|e| e.to_string())?;
    let new_dir = rec.dir().to_owned();
    {
        let m = rec.manifest_mut();
        m.name = name.clone();
        m.title = t.manifest.title.clone();
        m.vary = t.manifest.vary.clone();
        m.device = t.manifest.device.clone();
        m.setup = t.manifest.setup.clone();
        m.download = t.manifest.download.clone();
    }
    let err = |e: syncml_core::transcript::TranscriptError| e.to_string();
    let mut blessed = 0;
    for (i, e) in t.manifest.messages.iter().enumerate() {
        if let Some(n) = &e.notification {
            let n = n.to_notification().map_err(err)?;
            rec.notification(e.session, &n).map_err(err)?;
            continue;
        }
        let found = live.iter().find(|(j, _)| *j == i).map(|(_, inc)| inc);
        match found {
            Some(inc) if e.from != me => {
                blessed += 1;
                let body = as_recorded(inc, live_origin, rec_origin);
                let status = (inc.http_status != 200).then_some(inc.http_status);
                rec.message(
                    e.from,
                    e.session,
                    Some(&body).filter(|b| !b.is_empty()).map(|b| &b[..]),
                    inc.content_type.as_deref(),
                    inc.hmac.as_deref(),
                    status,
                )
                .map_err(err)?;
            }
            _ => {
                let body = t.wire(i).map_err(err)?;
                rec.message(
                    e.from,
                    e.session,
                    body.as_deref(),
                    e.content_type.as_deref(),
                    e.hmac.as_deref(),
                    e.http_status,
                )
                .map_err(err)?;
            }
        }
    }
    for d in &t.manifest.download {
        fs::copy(t.dir.join(&d.file), new_dir.join(&d.file))
            .map_err(|e| format!("{}: {e}", d.file))?;
    }
    rec.save().map_err(err)?;
    // Swap the folders: the old one goes only once the new one is complete.
    let old = parent.join(format!(".old-{name}"));
    let _ = fs::remove_dir_all(&old);
    fs::rename(&t.dir, &old).map_err(|e| e.to_string())?;
    fs::rename(&new_dir, &t.dir).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&old);
    Ok(blessed)
}
