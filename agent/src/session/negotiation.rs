//! The offer/answer exchange of one session as pure code: what to send and
//! what to hand webrtcbin, in which order.
//!
//! webrtcbin and the signaling channel disagree on timing: webrtcbin reports
//! local candidates (by m-line index only) before the offer exists, never
//! emits an empty end-of-candidates candidate, and must not be given remote
//! candidates before the answer is applied, while the viewer trickles them
//! right after its answer. This module holds what arrives early and releases
//! it in order. It is a component of the session [`Machine`], which drives
//! it and hands the [`Action`]s it returns to the actor; the ordering rules
//! are unit-tested here without GStreamer.
//!
//! [`Machine`]: super::machine::Machine

use super::machine::Action;
use crate::control_plane::events::{Candidate, SignalBody};
use crate::media::sdp;

/// Remote candidates held before the answer is applied, at most this many;
/// a peer that sends more before answering is misbehaving.
pub const MAX_HELD_REMOTE: usize = 64;

/// Why an input was dropped; the actor logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("answer before the offer was sent")]
    AnswerBeforeOffer,
    #[error("second answer")]
    SecondAnswer,
    #[error("offer from the viewer; the camera is the offerer")]
    OfferFromViewer,
    #[error("too many candidates before the answer")]
    TooManyEarlyCandidates,
    #[error("candidate for an unknown m-line")]
    UnknownMline,
    #[error("WebRTC signal in a legacy relay session")]
    LegacyMode,
}

impl Dropped {
    /// The `dropped` field of the log record.
    pub fn code(self) -> &'static str {
        match self {
            Dropped::AnswerBeforeOffer => "answer_before_offer",
            Dropped::SecondAnswer => "second_answer",
            Dropped::OfferFromViewer => "offer_from_viewer",
            Dropped::TooManyEarlyCandidates => "too_many_early_candidates",
            Dropped::UnknownMline => "unknown_mline",
            Dropped::LegacyMode => "legacy_mode",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Awaited,
    /// Given to webrtcbin, not yet confirmed.
    Applying,
    Applied,
}

#[derive(Debug, Clone)]
pub(crate) struct Negotiation {
    offer_requested: bool,
    /// The offer's mids by m-line, once it has been sent.
    mids: Option<Vec<Option<String>>>,
    held_local: Vec<(u32, String)>,
    gathering_complete: bool,
    answer: Answer,
    held_remote: Vec<Option<Candidate>>,
}

impl Default for Negotiation {
    fn default() -> Self {
        Self::new()
    }
}

impl Negotiation {
    pub fn new() -> Self {
        Self {
            offer_requested: false,
            mids: None,
            held_local: Vec::new(),
            gathering_complete: false,
            answer: Answer::Awaited,
            held_remote: Vec::new(),
        }
    }

    /// webrtcbin's `on-negotiation-needed`: one offer per session.
    pub fn negotiation_needed(&mut self) -> Option<Action> {
        if self.offer_requested {
            return None;
        }
        self.offer_requested = true;
        Some(Action::CreateOffer)
    }

    /// The offer, fingerprint already corrected, is ready to go: send it,
    /// then every candidate held so far, then the end marker if gathering
    /// already finished.
    pub fn offer_ready(&mut self, offer_sdp: String) -> Vec<Action> {
        let mids = sdp::mids(&offer_sdp);
        let mut steps = vec![Action::SendSignal(SignalBody::Offer { sdp: offer_sdp })];
        for (mline, candidate) in std::mem::take(&mut self.held_local) {
            steps.push(Action::SendSignal(local_candidate(&mids, mline, candidate)));
        }
        if self.gathering_complete {
            steps.push(Action::SendSignal(SignalBody::Candidate(None)));
        }
        self.mids = Some(mids);
        steps
    }

    pub fn offer_sent(&self) -> bool {
        self.mids.is_some()
    }

    /// A local candidate from webrtcbin, sent once the offer is out.
    pub fn local_candidate(&mut self, mline: u32, candidate: String) -> Option<Action> {
        match &self.mids {
            Some(mids) => Some(Action::SendSignal(local_candidate(mids, mline, candidate))),
            None => {
                self.held_local.push((mline, candidate));
                None
            }
        }
    }

    /// Gathering is complete: the end marker follows the candidates.
    pub fn gathering_complete(&mut self) -> Option<Action> {
        if self.gathering_complete {
            return None;
        }
        self.gathering_complete = true;
        self.offer_sent()
            .then_some(Action::SendSignal(SignalBody::Candidate(None)))
    }

    /// A signal from the viewer.
    pub fn remote_signal(&mut self, body: SignalBody) -> Result<Vec<Action>, Dropped> {
        match body {
            SignalBody::Offer { .. } => Err(Dropped::OfferFromViewer),
            SignalBody::Answer { sdp } => {
                if !self.offer_sent() {
                    return Err(Dropped::AnswerBeforeOffer);
                }
                if self.answer != Answer::Awaited {
                    return Err(Dropped::SecondAnswer);
                }
                self.answer = Answer::Applying;
                Ok(vec![Action::ApplyAnswer(sdp)])
            }
            SignalBody::Candidate(candidate) => {
                if self.answer != Answer::Applied {
                    if self.held_remote.len() >= MAX_HELD_REMOTE {
                        return Err(Dropped::TooManyEarlyCandidates);
                    }
                    self.held_remote.push(candidate);
                    return Ok(Vec::new());
                }
                self.add_remote(candidate).map(|step| vec![step])
            }
        }
    }

    /// webrtcbin applied the answer: the held remote candidates follow.
    /// Those for unknown m-lines are left out, with why.
    pub fn answer_applied(&mut self) -> (Vec<Action>, Vec<Dropped>) {
        self.answer = Answer::Applied;
        let mut steps = Vec::new();
        let mut dropped = Vec::new();
        for candidate in std::mem::take(&mut self.held_remote) {
            match self.add_remote(candidate) {
                Ok(step) => steps.push(step),
                Err(why) => dropped.push(why),
            }
        }
        (steps, dropped)
    }

    /// webrtcbin refused the answer; a corrected one may follow.
    pub fn answer_rejected(&mut self) {
        self.answer = Answer::Awaited;
    }

    fn add_remote(&self, candidate: Option<Candidate>) -> Result<Action, Dropped> {
        let Some(candidate) = candidate else {
            return Ok(Action::AddRemoteCandidate {
                mline: 0,
                candidate: None,
            });
        };
        let mids = self.mids.as_deref().unwrap_or_default();
        let mline = candidate.sdp_m_line_index.or_else(|| {
            let mid = candidate.sdp_mid.as_deref()?;
            mids.iter()
                .position(|known| known.as_deref() == Some(mid))
                .and_then(|index| u32::try_from(index).ok())
        });
        match mline {
            Some(mline) if (mline as usize) < mids.len().max(1) => Ok(Action::AddRemoteCandidate {
                mline,
                candidate: Some(candidate.candidate),
            }),
            _ => Err(Dropped::UnknownMline),
        }
    }
}

fn local_candidate(mids: &[Option<String>], mline: u32, candidate: String) -> SignalBody {
    SignalBody::Candidate(Some(Candidate {
        candidate,
        sdp_mid: mids.get(mline as usize).cloned().flatten(),
        sdp_m_line_index: Some(mline),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video0\r\n";

    fn remote(candidate: &str, mline: Option<u32>, mid: Option<&str>) -> SignalBody {
        SignalBody::Candidate(Some(Candidate {
            candidate: candidate.into(),
            sdp_mid: mid.map(Into::into),
            sdp_m_line_index: mline,
        }))
    }

    fn sent_candidate(candidate: &str) -> Action {
        Action::SendSignal(SignalBody::Candidate(Some(Candidate {
            candidate: candidate.into(),
            sdp_mid: Some("video0".into()),
            sdp_m_line_index: Some(0),
        })))
    }

    #[test]
    fn one_offer_per_session() {
        let mut negotiation = Negotiation::new();
        assert_eq!(negotiation.negotiation_needed(), Some(Action::CreateOffer));
        assert_eq!(negotiation.negotiation_needed(), None);
    }

    #[test]
    fn early_local_candidates_and_end_marker_follow_the_offer_with_their_mid() {
        let mut negotiation = Negotiation::new();
        assert_eq!(negotiation.local_candidate(0, "candidate:1".into()), None);
        assert_eq!(negotiation.gathering_complete(), None);
        let steps = negotiation.offer_ready(OFFER.into());
        assert_eq!(
            steps,
            vec![
                Action::SendSignal(SignalBody::Offer { sdp: OFFER.into() }),
                sent_candidate("candidate:1"),
                Action::SendSignal(SignalBody::Candidate(None)),
            ]
        );
        // Later ones go straight out; the end marker only once.
        assert_eq!(
            negotiation.local_candidate(0, "candidate:2".into()),
            Some(sent_candidate("candidate:2"))
        );
        assert_eq!(negotiation.gathering_complete(), None);
    }

    #[test]
    fn gathering_complete_after_the_offer_sends_the_marker_at_once() {
        let mut negotiation = Negotiation::new();
        negotiation.offer_ready(OFFER.into());
        assert_eq!(
            negotiation.gathering_complete(),
            Some(Action::SendSignal(SignalBody::Candidate(None)))
        );
    }

    #[test]
    fn answers_out_of_turn_are_dropped() {
        let mut negotiation = Negotiation::new();
        let answer = || SignalBody::Answer { sdp: "v=0".into() };
        assert_eq!(
            negotiation.remote_signal(answer()),
            Err(Dropped::AnswerBeforeOffer)
        );
        negotiation.offer_ready(OFFER.into());
        assert_eq!(
            negotiation.remote_signal(answer()),
            Ok(vec![Action::ApplyAnswer("v=0".into())])
        );
        assert_eq!(
            negotiation.remote_signal(answer()),
            Err(Dropped::SecondAnswer)
        );
        assert_eq!(
            negotiation.remote_signal(SignalBody::Offer { sdp: "v=0".into() }),
            Err(Dropped::OfferFromViewer)
        );
        // A rejected answer may be followed by a good one.
        negotiation.answer_rejected();
        assert_eq!(
            negotiation.remote_signal(answer()),
            Ok(vec![Action::ApplyAnswer("v=0".into())])
        );
    }

    #[test]
    fn remote_candidates_wait_for_the_applied_answer_then_resolve_their_mline() {
        let mut negotiation = Negotiation::new();
        negotiation.offer_ready(OFFER.into());
        negotiation
            .remote_signal(SignalBody::Answer { sdp: "v=0".into() })
            .unwrap();
        // Before webrtcbin confirms the answer: held, in order.
        for signal in [
            remote("candidate:a", Some(0), None),
            remote("candidate:b", None, Some("video0")),
            remote("candidate:c", None, Some("audio9")),
            SignalBody::Candidate(None),
        ] {
            assert_eq!(negotiation.remote_signal(signal), Ok(Vec::new()));
        }
        let (steps, dropped) = negotiation.answer_applied();
        let add = |candidate: &str| Action::AddRemoteCandidate {
            mline: 0,
            candidate: Some(candidate.into()),
        };
        assert_eq!(
            steps,
            vec![
                add("candidate:a"),
                add("candidate:b"),
                Action::AddRemoteCandidate {
                    mline: 0,
                    candidate: None
                },
            ]
        );
        assert_eq!(dropped, vec![Dropped::UnknownMline]);
        // After it: straight through; an m-line index out of range is dropped.
        assert_eq!(
            negotiation.remote_signal(remote("candidate:d", Some(0), None)),
            Ok(vec![add("candidate:d")])
        );
        assert_eq!(
            negotiation.remote_signal(remote("candidate:e", Some(3), None)),
            Err(Dropped::UnknownMline)
        );
    }

    #[test]
    fn a_flood_of_early_candidates_is_capped() {
        let mut negotiation = Negotiation::new();
        for index in 0..MAX_HELD_REMOTE {
            let candidate = format!("candidate:{index}");
            assert_eq!(
                negotiation.remote_signal(remote(&candidate, Some(0), None)),
                Ok(Vec::new())
            );
        }
        assert_eq!(
            negotiation.remote_signal(remote("candidate:x", Some(0), None)),
            Err(Dropped::TooManyEarlyCandidates)
        );
    }
}
