//! The lifecycle of one streaming session as a pure state machine.
//!
//! ```text
//! Accepting --Accepted--> Negotiating --OfferSent--> AwaitingAnswer
//!     --AnswerApplied--> Connecting --IceConnected--> Live
//! any active phase --(timeout, error, shutdown, server end)--> Ending --TeardownDone--> Ended
//! ```
//!
//! Inputs go in, actions come out; the session actor performs the actions.
//! Every transition checks the phase it starts from, so an input that
//! arrives out of order (a late ICE state, a duplicate end) is reported as
//! an [`InvalidTransition`] and changes nothing.

use std::fmt;

/// Why the camera ends a session; the codes are the contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraReason {
    CameraShutdown,
    CameraBusy,
    AnswerTimeout,
    IceFailed,
    MediaError,
    MaxDuration,
    CameraError,
}

impl CameraReason {
    pub fn code(self) -> &'static str {
        match self {
            CameraReason::CameraShutdown => "camera_shutdown",
            CameraReason::CameraBusy => "camera_busy",
            CameraReason::AnswerTimeout => "answer_timeout",
            CameraReason::IceFailed => "ice_failed",
            CameraReason::MediaError => "media_error",
            CameraReason::MaxDuration => "max_duration",
            CameraReason::CameraError => "camera_error",
        }
    }
}

/// Who or what ended the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndCause {
    /// The camera ended it; the server must be told.
    Camera(CameraReason),
    /// The server ended it (`stream:ended`), with its reason.
    Server(String),
    /// Accept was refused (the client hung up, the session vanished): there
    /// is nothing on the server to end.
    AcceptRefused,
}

impl fmt::Display for EndCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndCause::Camera(reason) => f.write_str(reason.code()),
            EndCause::Server(reason) => write!(f, "server:{reason}"),
            EndCause::AcceptRefused => f.write_str("accept_refused"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Accepting,
    Negotiating,
    AwaitingAnswer,
    Connecting,
    Live,
    Ending(EndCause),
    Ended(EndCause),
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Accepting => "accepting",
            Phase::Negotiating => "negotiating",
            Phase::AwaitingAnswer => "awaiting_answer",
            Phase::Connecting => "connecting",
            Phase::Live => "live",
            Phase::Ending(_) => "ending",
            Phase::Ended(_) => "ended",
        }
    }

    fn is_active(&self) -> bool {
        !matches!(self, Phase::Ending(_) | Phase::Ended(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Accepted,
    /// Accept failed; `server_knows` says whether the server session may
    /// still exist (a transport error) and must be ended over REST.
    AcceptFailed {
        server_knows: bool,
    },
    OfferSent,
    AnswerApplied,
    IceConnected,
    IceFailed,
    AnswerTimeout,
    /// ICE did not connect in time after the answer.
    IceTimeout,
    /// The session reached `session.max_duration`.
    MaxDuration,
    /// Signaling stayed down past its grace.
    SignalingLost,
    MediaError,
    Shutdown,
    ServerEnded(String),
    TeardownDone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Build the pipeline; the offer follows from it.
    StartMedia,
    /// Tell the server the camera ends the session.
    EndOverRest(CameraReason),
    /// Stop the pipeline and free everything the session holds.
    Teardown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input {input:?} is not valid in phase {phase}")]
pub struct InvalidTransition {
    pub phase: &'static str,
    pub input: Input,
}

#[derive(Debug, Clone)]
pub struct Machine {
    phase: Phase,
}

impl Default for Machine {
    fn default() -> Self {
        Self::new()
    }
}

impl Machine {
    pub fn new() -> Self {
        Self {
            phase: Phase::Accepting,
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    fn end(&mut self, cause: EndCause) -> Vec<Action> {
        let actions = match &cause {
            EndCause::Camera(reason) => vec![Action::EndOverRest(*reason), Action::Teardown],
            EndCause::Server(_) | EndCause::AcceptRefused => vec![Action::Teardown],
        };
        self.phase = Phase::Ending(cause);
        actions
    }

    /// Applies one input.
    pub fn handle(&mut self, input: Input) -> Result<Vec<Action>, InvalidTransition> {
        use Phase::*;
        let actions = match (&self.phase, &input) {
            (Accepting, Input::Accepted) => {
                self.phase = Negotiating;
                vec![Action::StartMedia]
            }
            (Accepting, Input::AcceptFailed { server_knows: true }) => {
                self.end(EndCause::Camera(CameraReason::CameraError))
            }
            (
                Accepting,
                Input::AcceptFailed {
                    server_knows: false,
                },
            ) => self.end(EndCause::AcceptRefused),
            (Negotiating, Input::OfferSent) => {
                self.phase = AwaitingAnswer;
                vec![]
            }
            (AwaitingAnswer, Input::AnswerApplied) => {
                self.phase = Connecting;
                vec![]
            }
            (Connecting, Input::IceConnected) => {
                self.phase = Live;
                vec![]
            }
            (Connecting | Live, Input::IceFailed) => {
                self.end(EndCause::Camera(CameraReason::IceFailed))
            }
            (Negotiating | AwaitingAnswer, Input::AnswerTimeout) => {
                self.end(EndCause::Camera(CameraReason::AnswerTimeout))
            }
            (Connecting, Input::IceTimeout) => self.end(EndCause::Camera(CameraReason::IceFailed)),
            (phase, Input::MaxDuration) if phase.is_active() => {
                self.end(EndCause::Camera(CameraReason::MaxDuration))
            }
            (phase, Input::SignalingLost) if phase.is_active() => {
                self.end(EndCause::Camera(CameraReason::CameraError))
            }
            (phase, Input::MediaError) if phase.is_active() && *phase != Accepting => {
                self.end(EndCause::Camera(CameraReason::MediaError))
            }
            (phase, Input::Shutdown) if phase.is_active() => {
                self.end(EndCause::Camera(CameraReason::CameraShutdown))
            }
            (phase, Input::ServerEnded(reason)) if phase.is_active() => {
                self.end(EndCause::Server(reason.clone()))
            }
            // Ending already: a second cause changes nothing.
            (
                Ending(_),
                Input::ServerEnded(_)
                | Input::Shutdown
                | Input::MediaError
                | Input::IceFailed
                | Input::IceTimeout
                | Input::MaxDuration
                | Input::SignalingLost,
            ) => vec![],
            (Ending(cause), Input::TeardownDone) => {
                self.phase = Ended(cause.clone());
                vec![]
            }
            (phase, _) => {
                return Err(InvalidTransition {
                    phase: phase.name(),
                    input,
                });
            }
        };
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Machine {
        let mut machine = Machine::new();
        for input in [
            Input::Accepted,
            Input::OfferSent,
            Input::AnswerApplied,
            Input::IceConnected,
        ] {
            machine.handle(input).unwrap();
        }
        assert_eq!(machine.phase(), &Phase::Live);
        machine
    }

    #[test]
    fn happy_path_then_server_end() {
        let mut machine = Machine::new();
        assert_eq!(
            machine.handle(Input::Accepted).unwrap(),
            [Action::StartMedia]
        );
        let mut machine = {
            machine.handle(Input::OfferSent).unwrap();
            machine.handle(Input::AnswerApplied).unwrap();
            machine.handle(Input::IceConnected).unwrap();
            machine
        };
        assert_eq!(
            machine.handle(Input::ServerEnded("hangup".into())).unwrap(),
            [Action::Teardown]
        );
        assert_eq!(machine.handle(Input::TeardownDone).unwrap(), []);
        assert_eq!(
            machine.phase(),
            &Phase::Ended(EndCause::Server("hangup".into()))
        );
    }

    #[test]
    fn camera_side_ends_go_over_rest_first() {
        let cases = [
            (Input::Shutdown, CameraReason::CameraShutdown),
            (Input::MediaError, CameraReason::MediaError),
            (Input::IceFailed, CameraReason::IceFailed),
        ];
        for (input, reason) in cases {
            let mut machine = live();
            assert_eq!(
                machine.handle(input).unwrap(),
                [Action::EndOverRest(reason), Action::Teardown]
            );
        }
    }

    #[test]
    fn answer_timeout_only_before_the_answer() {
        let mut machine = Machine::new();
        machine.handle(Input::Accepted).unwrap();
        machine.handle(Input::OfferSent).unwrap();
        assert_eq!(
            machine.handle(Input::AnswerTimeout).unwrap(),
            [
                Action::EndOverRest(CameraReason::AnswerTimeout),
                Action::Teardown
            ]
        );
        let mut machine = live();
        assert!(machine.handle(Input::AnswerTimeout).is_err());
        assert_eq!(machine.phase(), &Phase::Live);
    }

    #[test]
    fn ice_timeout_only_while_connecting() {
        let mut machine = Machine::new();
        machine.handle(Input::Accepted).unwrap();
        machine.handle(Input::OfferSent).unwrap();
        assert!(machine.handle(Input::IceTimeout).is_err());
        machine.handle(Input::AnswerApplied).unwrap();
        assert_eq!(
            machine.handle(Input::IceTimeout).unwrap(),
            [
                Action::EndOverRest(CameraReason::IceFailed),
                Action::Teardown
            ]
        );
        let mut machine = live();
        assert!(machine.handle(Input::IceTimeout).is_err());
    }

    #[test]
    fn max_duration_and_signaling_loss_end_any_active_session() {
        for (input, reason) in [
            (Input::MaxDuration, CameraReason::MaxDuration),
            (Input::SignalingLost, CameraReason::CameraError),
        ] {
            let mut machine = live();
            assert_eq!(
                machine.handle(input.clone()).unwrap(),
                [Action::EndOverRest(reason), Action::Teardown]
            );
            assert_eq!(machine.handle(input).unwrap(), []);
        }
    }

    #[test]
    fn refused_accept_tears_down_without_rest() {
        let mut machine = Machine::new();
        assert_eq!(
            machine
                .handle(Input::AcceptFailed {
                    server_knows: false
                })
                .unwrap(),
            [Action::Teardown]
        );
        let mut machine = Machine::new();
        assert_eq!(
            machine
                .handle(Input::AcceptFailed { server_knows: true })
                .unwrap(),
            [
                Action::EndOverRest(CameraReason::CameraError),
                Action::Teardown
            ]
        );
    }

    #[test]
    fn out_of_order_inputs_are_rejected_and_change_nothing() {
        let mut machine = Machine::new();
        for input in [
            Input::OfferSent,
            Input::AnswerApplied,
            Input::IceConnected,
            Input::TeardownDone,
            Input::MediaError,
        ] {
            assert!(machine.handle(input).is_err());
            assert_eq!(machine.phase(), &Phase::Accepting);
        }
        let mut machine = live();
        assert!(machine.handle(Input::Accepted).is_err());
        assert!(machine.handle(Input::OfferSent).is_err());
    }

    #[test]
    fn a_second_end_cause_is_ignored_and_ended_is_final() {
        let mut machine = live();
        machine.handle(Input::Shutdown).unwrap();
        assert_eq!(machine.handle(Input::ServerEnded("x".into())).unwrap(), []);
        assert_eq!(machine.handle(Input::MediaError).unwrap(), []);
        machine.handle(Input::TeardownDone).unwrap();
        assert_eq!(
            machine.phase(),
            &Phase::Ended(EndCause::Camera(CameraReason::CameraShutdown))
        );
        for input in [
            Input::Shutdown,
            Input::ServerEnded("x".into()),
            Input::TeardownDone,
        ] {
            assert!(machine.handle(input).is_err());
        }
    }

    #[test]
    fn reason_codes_match_the_contract() {
        let codes: Vec<&str> = [
            CameraReason::CameraShutdown,
            CameraReason::CameraBusy,
            CameraReason::AnswerTimeout,
            CameraReason::IceFailed,
            CameraReason::MediaError,
            CameraReason::MaxDuration,
            CameraReason::CameraError,
        ]
        .map(CameraReason::code)
        .to_vec();
        assert_eq!(
            codes,
            [
                "camera_shutdown",
                "camera_busy",
                "answer_timeout",
                "ice_failed",
                "media_error",
                "max_duration",
                "camera_error"
            ]
        );
    }
}
