// The camera-agent viewer page: the contract's client role in a browser.
//
// It connects to the control plane it was served from as the client device
// (the real socket.io-client), and on Watch: POST /api/v1/streams, waits for
// the camera's offer on webrtc:signal, answers with its own
// RTCPeerConnection, trickles candidates both ways and plays the video. It
// ends on stream:ended, on Hang up (POST /api/v1/streams/{id}/end) and when
// the page goes away. A camera on the legacy relay (SIMPLE_STREAMING=0)
// sends stream:frame JPEGs instead, shown in place of the video (legacy.js).
//
// Query parameters: token (client token), camera (camera id), ice (JSON
// array of RTCIceServer for this page's own peer connection; default none),
// policy (all | relay), autostart=1.
//
// Tests drive it through window.cameraViewer: watch(), hangUp(), state,
// stats() (a plain JSON snapshot), events (state changes with timestamps).
(function () {
  'use strict';

  const STATS_INTERVAL_MS = 500;
  const FIRST_FRAME_POLL_MS = 20;
  // Signals for a session whose POST has not returned yet; a bound so a
  // misbehaving server cannot grow the page without limit.
  const MAX_BUFFERED = 256;

  const $ = (id) => document.getElementById(id);
  const ui = {
    watch: $('watch'),
    hangup: $('hangup'),
    state: $('state'),
    signaling: $('signaling'),
    video: $('video'),
    frame: $('frame'),
    message: $('message'),
    camera: $('camera'),
    first: $('o-first'),
    fps: $('o-fps'),
    bitrate: $('o-bitrate'),
    rtt: $('o-rtt'),
    resolution: $('o-resolution'),
    freezes: $('o-freezes'),
    path: $('o-path'),
  };

  const params = new URLSearchParams(location.search);
  const config = {
    token: params.get('token') || '',
    camera: params.get('camera') || '',
    policy: params.get('policy') === 'relay' ? 'relay' : 'all',
    autostart: params.get('autostart') === '1',
    iceServers: [],
    iceError: null,
  };
  // The peer connection uses these ICE servers and no others: never a
  // default or public STUN server.
  if (params.has('ice')) {
    try {
      const parsed = JSON.parse(params.get('ice'));
      if (!Array.isArray(parsed)) throw new Error('not a JSON array');
      config.iceServers = parsed;
    } catch (err) {
      config.iceError = 'bad ice parameter: ' + err.message;
    }
  }

  const events = [];
  let state = 'idle';
  let session = null; // the current (or last) session; see newSession()
  const buffered = new Map(); // sessionId -> [[event, payload], ...]
  let bufferedCount = 0;

  function newSession() {
    return {
      id: null,
      pc: null,
      t0: 0, // performance.now() just before POST /streams
      remoteSet: false,
      signals: Promise.resolve(), // the chain that applies signals in order
      pendingCandidates: [], // remote candidates before setRemoteDescription
      endOfCandidates: false,
      abandoned: false, // hung up before the POST answered
      closed: false,
      firstFrameMs: null,
      firstFrameSource: null,
      endReason: null,
      statsTimer: null,
      finishing: null, // the teardown's promise, once it started
      firstFrameTimer: null,
      samples: [], // [{t, frames, bytes}] for the per-second rates
      last: emptySnapshot(),
      offerSdp: null,
      answerSdp: null,
      legacy: false, // stream:frame arrived: the legacy JPEG relay
      jpeg: window.LegacyFrames.create(),
    };
  }

  function emptySnapshot() {
    return {
      timestampMs: null,
      framesDecoded: 0,
      framesReceived: null,
      framesPerSecond: null,
      frameWidth: null,
      frameHeight: null,
      freezeCount: null,
      totalFreezesDuration: null,
      pauseCount: null,
      totalPausesDuration: null,
      nackCount: null,
      pliCount: null,
      firCount: null,
      packetsLost: null,
      packetsReceived: null,
      retransmittedPacketsReceived: null,
      bytesReceived: null,
      bitrateKbps: null,
      jitterBufferDelayMs: null,
      framesDropped: null,
      keyFramesDecoded: null,
      decoderImplementation: null,
      codecMimeType: null,
      codecFmtp: null,
      currentRoundTripTime: null,
      localCandidateType: null,
      localProtocol: null,
      localRelayProtocol: null,
      remoteCandidateType: null,
      remoteProtocol: null,
      iceConnectionState: null,
      connectionState: null,
    };
  }

  function setState(next, detail) {
    state = next;
    events.push({
      at: Math.round(performance.now() * 10) / 10,
      wall: Date.now(),
      state: next,
      sessionId: session ? session.id : null,
      detail: detail || null,
    });
    ui.state.textContent = next;
    ui.state.dataset.state = next;
    const busy = next === 'connecting' || next === 'active';
    ui.watch.disabled = busy;
    ui.hangup.disabled = !busy;
  }

  function say(text) {
    ui.message.textContent = text || '';
  }

  // ---- signaling -------------------------------------------------------

  ui.camera.textContent = config.camera || '(none: add ?camera=...)';
  // Browsers cannot put headers on a WebSocket upgrade, so the first
  // Engine.IO request goes over HTTP long-polling, which carries the
  // Authorization header; the CONNECT packet carries the auth payload.
  // The connection then upgrades to a WebSocket.
  const socket = io(location.origin, {
    path: '/socket.io/',
    transports: ['polling', 'websocket'],
    extraHeaders: { Authorization: 'Bearer ' + config.token },
    auth: { token: config.token },
    reconnectionDelayMax: 5000,
  });
  // Resolves once connected; rejects when the server refuses the token
  // (socket.io-client then stops retrying), not on transient errors.
  const socketReady = () =>
    socket.connected
      ? Promise.resolve()
      : new Promise((resolve, reject) => {
          const ok = () => {
            socket.off('connect_error', refused);
            resolve();
          };
          const refused = (err) => {
            if (socket.active) return;
            socket.off('connect', ok);
            socket.off('connect_error', refused);
            reject(err);
          };
          socket.once('connect', ok);
          socket.on('connect_error', refused);
        });

  socket.on('connect', () => (ui.signaling.textContent = 'online'));
  socket.on('disconnect', (why) => (ui.signaling.textContent = 'offline (' + why + ')'));
  socket.on('connect_error', (err) => (ui.signaling.textContent = 'refused: ' + err.message));
  for (const name of ['stream:started', 'stream:ended', 'webrtc:signal', 'stream:frame']) {
    socket.on(name, (payload) => route(name, payload));
  }

  // Events for the current session go to it; while its POST is in flight
  // (id not known yet) everything is kept by sessionId, to be replayed for
  // the id the POST returns.
  function route(name, payload) {
    if (!payload || typeof payload.sessionId !== 'string') return;
    const current = session && !session.closed ? session : null;
    if (current && current.id === payload.sessionId) {
      handle(current, name, payload);
    } else if (current && current.id === null && bufferedCount < MAX_BUFFERED) {
      if (!buffered.has(payload.sessionId)) buffered.set(payload.sessionId, []);
      buffered.get(payload.sessionId).push([name, payload]);
      bufferedCount += 1;
    }
  }

  function clearBuffer() {
    buffered.clear();
    bufferedCount = 0;
  }

  function handle(s, name, payload) {
    if (name === 'stream:ended') {
      finish(s, payload.reason || 'ended', false);
    } else if (name === 'stream:frame') {
      onFrame(s, payload);
    } else if (name === 'webrtc:signal') {
      // One signal at a time, in arrival order: an end-of-candidates
      // marker must not overtake the candidates before it.
      s.signals = s.signals
        .then(() => onSignal(s, payload))
        .catch((err) => fail(s, 'signal_error', err));
    }
    // stream:started needs nothing: the offer follows it.
  }

  function emitSignal(s, body) {
    if (s.closed) return;
    socket.emit('webrtc:signal', Object.assign({ sessionId: s.id }, body));
  }

  async function onSignal(s, signal) {
    if (s.closed) return;
    if (signal.type === 'offer' && typeof signal.sdp === 'string') {
      if (s.remoteSet) return; // one offer per session
      s.offerSdp = signal.sdp;
      // The offer is applied as sent: its H.264 (constrained baseline,
      // packetization-mode 1) is what every browser decodes.
      await s.pc.setRemoteDescription({ type: 'offer', sdp: signal.sdp });
      if (s.closed) return;
      s.remoteSet = true;
      for (const candidate of s.pendingCandidates) await addRemoteCandidate(s, candidate);
      s.pendingCandidates = [];
      if (s.endOfCandidates) await addRemoteCandidate(s, null);
      const answer = await s.pc.createAnswer();
      if (s.closed) return;
      // A browser without H.264 rejects the video m-line (port 0), as
      // Firefox does when its OpenH264 plugin was never downloaded: end at
      // once with a reason rather than wait for media that cannot come.
      if (!/^m=video [1-9]/m.test(answer.sdp) || !/^a=rtpmap:\d+ H264\//im.test(answer.sdp)) {
        fail(s, 'h264_unsupported', new Error('this browser cannot receive H.264'));
        return;
      }
      await s.pc.setLocalDescription(answer);
      if (s.closed) return;
      s.answerSdp = answer.sdp;
      emitSignal(s, { type: 'answer', sdp: answer.sdp });
    } else if (signal.type === 'candidate') {
      const candidate = signal.candidate || null;
      if (!s.remoteSet) {
        if (candidate) s.pendingCandidates.push(candidate);
        else s.endOfCandidates = true;
        return;
      }
      await addRemoteCandidate(s, candidate);
    }
  }

  // A legacy relay frame (legacy.js checks, counts and decodes it).
  function onFrame(s, frame) {
    if (s.closed) return;
    if (!s.legacy) {
      s.legacy = true;
      ui.video.hidden = true;
      ui.frame.hidden = false;
    }
    const taken = window.LegacyFrames.receive(s.jpeg, frame, (src) => {
      if (s.closed) return;
      ui.frame.src = src;
      if (s.firstFrameMs === null) {
        s.firstFrameMs = Math.round((performance.now() - s.t0) * 10) / 10;
        s.firstFrameSource = 'stream-frame';
        if (state === 'connecting') setState('active');
      }
      sample(s).then(render, () => {});
    });
    if (!taken) console.warn('malformed stream:frame', frame.seq);
  }

  async function addRemoteCandidate(s, candidate) {
    if (s.closed) return;
    try {
      if (candidate) {
        await s.pc.addIceCandidate({
          candidate: candidate.candidate,
          sdpMid: candidate.sdpMid,
          sdpMLineIndex: candidate.sdpMLineIndex,
        });
      } else {
        // End of candidates (an empty candidate, as the spec says).
        await s.pc.addIceCandidate({ candidate: '', sdpMid: null, sdpMLineIndex: 0 });
      }
    } catch (err) {
      // One bad candidate must not end the session; ICE decides.
      console.warn('addIceCandidate', err);
    }
  }

  // ---- session life ------------------------------------------------------

  async function watch() {
    // A session still tearing down finishes first.
    if (session && session.finishing) await session.finishing;
    if (state === 'connecting' || state === 'active') return session.id;
    if (config.iceError) {
      say(config.iceError);
      throw new Error(config.iceError);
    }
    if (!config.camera) {
      say('no camera: add ?camera=... to the URL');
      throw new Error('no camera parameter');
    }
    say('');
    clearBuffer();
    const s = newSession();
    session = s;
    setState('connecting');
    try {
      await socketReady();
    } catch (err) {
      fail(s, 'signaling_refused', err);
      throw err;
    }
    if (s.closed) return null;
    s.pc = createPeer(s);
    s.t0 = performance.now();
    let response;
    let body;
    try {
      response = await fetch('/api/v1/streams', {
        method: 'POST',
        headers: {
          Authorization: 'Bearer ' + config.token,
          'Content-Type': 'application/json',
        },
        body: JSON.stringify({ cameraId: config.camera }),
      });
      body = await response.json().catch(() => ({}));
    } catch (err) {
      fail(s, 'network_error', err);
      throw err;
    }
    if (response.status !== 201 || typeof body.sessionId !== 'string') {
      const code = body.error || 'http_' + response.status;
      fail(s, code, new Error(body.message || code));
      throw new Error('POST /api/v1/streams: ' + code);
    }
    s.id = body.sessionId;
    if (s.abandoned) {
      // Hung up while the POST was in flight: end the session it made.
      await endOverRest(s.id, 'hangup');
      return s.id;
    }
    const early = buffered.get(s.id) || [];
    clearBuffer();
    for (const [name, payload] of early) handle(s, name, payload);
    return s.id;
  }

  function createPeer(s) {
    const pc = new RTCPeerConnection({
      iceServers: config.iceServers,
      iceTransportPolicy: config.policy,
    });
    pc.onicecandidate = (event) => {
      if (!s.id) return;
      if (event.candidate && event.candidate.candidate) {
        const c = event.candidate;
        emitSignal(s, {
          type: 'candidate',
          candidate: { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex },
        });
      } else if (!event.candidate) {
        emitSignal(s, { type: 'candidate', candidate: null });
      }
    };
    pc.ontrack = (event) => {
      const stream = event.streams && event.streams[0] ? event.streams[0] : new MediaStream([event.track]);
      ui.video.srcObject = stream;
      const played = ui.video.play();
      if (played && played.catch) played.catch((err) => console.warn('play', err));
      watchFirstFrame(s);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' && !s.closed) {
        fail(s, 'ice_failed', new Error('the peer connection failed'));
      }
    };
    s.statsTimer = setInterval(() => {
      sample(s).then(render, () => {});
    }, STATS_INTERVAL_MS);
    return pc;
  }

  // The first frame: requestVideoFrameCallback where the browser has it,
  // and framesDecoded > 0 polled alongside (whichever sees it first).
  function watchFirstFrame(s) {
    const seen = (source) => {
      if (s.firstFrameMs !== null || s.closed) return;
      s.firstFrameMs = Math.round((performance.now() - s.t0) * 10) / 10;
      s.firstFrameSource = source;
      clearInterval(s.firstFrameTimer);
      s.firstFrameTimer = null;
      if (state === 'connecting') setState('active');
      render(s.last);
    };
    if (typeof ui.video.requestVideoFrameCallback === 'function') {
      ui.video.requestVideoFrameCallback(() => seen('video-frame'));
    }
    s.firstFrameTimer = setInterval(() => {
      if (s.closed || !s.pc) return;
      s.pc.getReceivers().forEach((receiver) => {
        receiver.getStats().then((report) => {
          report.forEach((stat) => {
            if (stat.type === 'inbound-rtp' && stat.framesDecoded > 0) seen('stats');
          });
        }, () => {});
      });
    }, FIRST_FRAME_POLL_MS);
  }

  function fail(s, reason, err) {
    console.warn('session failed:', reason, err);
    say(reason + (err && err.message ? ': ' + err.message : ''));
    // Failures after the session exists end it on the server as well.
    finish(s, reason, s.id !== null);
  }

  // Releases everything the session holds; idempotent.
  function finish(s, reason, endOnServer) {
    if (s.finishing) return s.finishing;
    if (s.closed) return Promise.resolve();
    s.endReason = reason;
    clearInterval(s.statsTimer);
    clearInterval(s.firstFrameTimer);
    s.statsTimer = s.firstFrameTimer = null;
    // The last figures stay readable through stats() after the end.
    const closing = s.pc ? sample(s).catch(() => {}) : Promise.resolve();
    const teardown = closing.then(() => {
      s.closed = true;
      if (s.pc) {
        s.pc.getReceivers().forEach((receiver) => receiver.track && receiver.track.stop());
        s.pc.onicecandidate = s.pc.ontrack = s.pc.onconnectionstatechange = null;
        s.pc.close();
        s.pc = null;
      }
      const stream = ui.video.srcObject;
      if (stream) stream.getTracks().forEach((track) => track.stop());
      ui.video.srcObject = null;
      ui.frame.removeAttribute('src');
      ui.frame.hidden = true;
      ui.video.hidden = false;
      s.pendingCandidates = [];
      clearBuffer();
      if (session === s) {
        s.last.connectionState = 'closed';
        setState('ended', reason);
        render(s.last);
      }
    });
    // Mark closed at once so no late signal acts on it.
    s.closed = true;
    if (!s.id) s.abandoned = true;
    const ending = endOnServer && s.id ? endOverRest(s.id, reason) : Promise.resolve();
    s.finishing = Promise.all([teardown, ending]).then(() => {
      s.finishing = null;
    });
    return s.finishing;
  }

  async function endOverRest(id, reason, keepalive) {
    try {
      const response = await fetch('/api/v1/streams/' + encodeURIComponent(id) + '/end', {
        method: 'POST',
        keepalive: !!keepalive,
        headers: {
          Authorization: 'Bearer ' + config.token,
          'Content-Type': 'application/json',
        },
        body: JSON.stringify({ reason: reason }),
      });
      return response.status;
    } catch (err) {
      console.warn('end', err);
      return null;
    }
  }

  async function hangUp() {
    const s = session;
    if (!s) return;
    if (s.finishing) return s.finishing;
    if (s.closed) return;
    await finish(s, 'hangup', true);
  }

  function onUnload() {
    const s = session;
    if (s && !s.closed) {
      // keepalive lets the end request outlive the page.
      if (s.id) endOverRest(s.id, 'page_closed', true);
      finish(s, 'page_closed', false);
    }
    socket.disconnect();
  }
  window.addEventListener('pagehide', onUnload);
  window.addEventListener('beforeunload', onUnload);
  // Back from the back/forward cache: signaling again, ready to Watch.
  window.addEventListener('pageshow', (event) => {
    if (event.persisted && !socket.connected) socket.connect();
  });

  // ---- figures -------------------------------------------------------------

  function sampleLegacy(s) {
    s.last = window.LegacyFrames.fill(s.jpeg, emptySnapshot());
    rates(s, s.last, s.last.timestampMs);
    return s.last;
  }

  // Reads getStats into s.last (the snapshot stats() returns).
  async function sample(s) {
    if (s.legacy) return sampleLegacy(s);
    const pc = s.pc;
    if (!pc) return s.last;
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((stat) => byId.set(stat.id, stat));
    let inbound = null;
    let pair = null;
    report.forEach((stat) => {
      if (stat.type === 'inbound-rtp' && stat.kind === 'video') inbound = stat;
      if (stat.type === 'transport' && stat.selectedCandidatePairId) {
        pair = byId.get(stat.selectedCandidatePairId) || pair;
      }
    });
    if (!pair) {
      // Firefox marks the pair instead of naming it on the transport.
      report.forEach((stat) => {
        if (stat.type === 'candidate-pair' && (stat.selected || (stat.nominated && stat.state === 'succeeded'))) {
          pair = stat;
        }
      });
    }
    const snap = emptySnapshot();
    const num = (value) => (typeof value === 'number' ? value : null);
    if (inbound) {
      snap.timestampMs = num(inbound.timestamp);
      snap.framesDecoded = num(inbound.framesDecoded) || 0;
      snap.framesReceived = num(inbound.framesReceived);
      snap.frameWidth = num(inbound.frameWidth);
      snap.frameHeight = num(inbound.frameHeight);
      snap.freezeCount = num(inbound.freezeCount);
      snap.totalFreezesDuration = num(inbound.totalFreezesDuration);
      snap.pauseCount = num(inbound.pauseCount);
      snap.totalPausesDuration = num(inbound.totalPausesDuration);
      snap.nackCount = num(inbound.nackCount);
      snap.pliCount = num(inbound.pliCount);
      snap.firCount = num(inbound.firCount);
      snap.packetsLost = num(inbound.packetsLost);
      snap.packetsReceived = num(inbound.packetsReceived);
      snap.retransmittedPacketsReceived = num(inbound.retransmittedPacketsReceived);
      snap.bytesReceived = num(inbound.bytesReceived);
      snap.framesDropped = num(inbound.framesDropped);
      snap.keyFramesDecoded = num(inbound.keyFramesDecoded);
      snap.decoderImplementation = inbound.decoderImplementation || null;
      if (inbound.jitterBufferEmittedCount > 0) {
        snap.jitterBufferDelayMs =
          Math.round((inbound.jitterBufferDelay / inbound.jitterBufferEmittedCount) * 10000) / 10;
      }
      const codec = inbound.codecId ? byId.get(inbound.codecId) : null;
      if (codec) {
        snap.codecMimeType = codec.mimeType || null;
        snap.codecFmtp = codec.sdpFmtpLine || null;
      }
      rates(s, snap, inbound.timestamp);
    }
    if (pair) {
      snap.currentRoundTripTime = num(pair.currentRoundTripTime);
      const local = byId.get(pair.localCandidateId);
      const remote = byId.get(pair.remoteCandidateId);
      if (local) {
        snap.localCandidateType = local.candidateType || null;
        snap.localProtocol = local.protocol || null;
        snap.localRelayProtocol = local.relayProtocol || null;
      }
      if (remote) {
        snap.remoteCandidateType = remote.candidateType || null;
        snap.remoteProtocol = remote.protocol || null;
      }
    }
    snap.iceConnectionState = pc.iceConnectionState;
    snap.connectionState = pc.connectionState;
    if (s.pc === pc) s.last = snap;
    return snap;
  }

  // fps and bitrate over the last ~1 s, from framesDecoded and
  // bytesReceived deltas against the sample closest to 1 s ago.
  function rates(s, snap, timestamp) {
    const now = { t: timestamp, frames: snap.framesDecoded, bytes: snap.bytesReceived || 0 };
    const last = s.samples[s.samples.length - 1];
    if (!last || now.t > last.t) s.samples.push(now);
    while (s.samples.length > 2 && now.t - s.samples[1].t >= 1000) s.samples.shift();
    const base = s.samples[0];
    const dt = (now.t - base.t) / 1000;
    if (dt >= 0.25) {
      snap.framesPerSecond = Math.round(((now.frames - base.frames) / dt) * 10) / 10;
      snap.bitrateKbps = Math.round(((now.bytes - base.bytes) * 8) / dt / 100) / 10;
    }
  }

  function snapshot() {
    const s = session;
    const snap = Object.assign({}, s ? s.last : emptySnapshot());
    snap.state = state;
    snap.sessionId = s ? s.id : null;
    snap.firstFrameMs = s ? s.firstFrameMs : null;
    snap.firstFrameSource = s ? s.firstFrameSource : null;
    snap.endReason = s ? s.endReason : null;
    snap.iceTransportPolicy = config.policy;
    snap.mode = s && s.legacy ? 'legacy' : s && s.remoteSet ? 'webrtc' : null;
    snap.seqGaps = s && s.legacy ? s.jpeg.seqGaps : null;
    snap.decodeErrors = s && s.legacy ? s.jpeg.decodeErrors : null;
    return snap;
  }

  async function stats() {
    const s = session;
    if (s && !s.closed && (s.pc || s.legacy)) await sample(s).catch(() => {});
    return snapshot();
  }

  function render() {
    const snap = snapshot();
    const show = (value, unit) => (value === null || value === undefined ? '-' : value + (unit || ''));
    ui.first.textContent = show(snap.firstFrameMs, ' ms');
    ui.fps.textContent = show(snap.framesPerSecond);
    ui.bitrate.textContent = show(snap.bitrateKbps, ' kbit/s');
    ui.rtt.textContent =
      snap.currentRoundTripTime === null
        ? '-'
        : Math.round(snap.currentRoundTripTime * 10000) / 10 + ' ms';
    ui.resolution.textContent = snap.frameWidth ? snap.frameWidth + 'x' + snap.frameHeight : '-';
    ui.freezes.textContent =
      snap.freezeCount === null ? '-' : snap.freezeCount + ' (' + (snap.totalFreezesDuration || 0).toFixed(1) + ' s)';
    ui.path.textContent = snap.mode === 'legacy'
      ? 'legacy JPEG over the socket'
      : snap.localCandidateType
      ? snap.localCandidateType + '/' + snap.localProtocol + ' -> ' + snap.remoteCandidateType + '/' + snap.remoteProtocol
      : '-';
  }

  // ---- wiring --------------------------------------------------------------

  ui.watch.addEventListener('click', () => {
    watch().catch((err) => console.warn('watch', err));
  });
  ui.hangup.addEventListener('click', () => {
    hangUp().catch((err) => console.warn('hang up', err));
  });

  window.cameraViewer = {
    watch: watch,
    hangUp: hangUp,
    stats: stats,
    events: events,
    get state() {
      return state;
    },
    get sdp() {
      return session ? { offer: session.offerSdp, answer: session.answerSdp } : null;
    },
    // The ICE servers may hold TURN credentials: only their count is shown.
    config: { camera: config.camera, iceServers: config.iceServers.length, policy: config.policy },
  };

  setState('idle');
  render();
  if (config.iceError) say(config.iceError);
  if (config.autostart) ui.watch.click();
})();
