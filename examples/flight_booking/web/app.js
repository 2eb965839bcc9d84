// The flight agent's web page: the live transcript, and one card per background task.
//
// It joins the room with livekit-client, opens the microphone once the agent listens,
// plays the agent's audio, shows the transcriptions the agent publishes on the
// `lk.transcription` topic, and the plugin's task feed (`publish_tasks`, schema v1 in
// the plugin's README): messages on the `lk.asynctools.tasks` topic, the current list
// from the `asynctools.list_tasks` RPC, and a Cancel button calling
// `asynctools.cancel_task`.

import { ConnectionState, Room, RoomEvent, RpcError, Track } from 'livekit-client';

const TRANSCRIPTION_TOPIC = 'lk.transcription';
const TASKS_TOPIC = 'lk.asynctools.tasks';
const SCHEMA_VERSION = 1;
const RPC_LIST_TASKS = 'asynctools.list_tasks';
const RPC_CANCEL_TASK = 'asynctools.cancel_task';
const AGENT_STATE = 'lk.agent.state';
// the agent registers its RPC methods just after its session starts: a list asked for
// in between is refused as an unsupported method, and asked again a moment later
const LIST_RETRIES = 5;
const LIST_RETRY_MS = 1000;

const REPLY_TEXT = {
  scheduled: 'the agent is about to tell you',
  heard: 'the agent told you',
  interrupted: 'the agent was interrupted telling you',
  not_given: 'the agent did not tell you',
};

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/** @type {Room | undefined} */
let room;
/** The agent's participant, once it is in the room. */
let agent;
let micOpened = false;
/** The agent whose tasks were listed (a new agent is asked again). */
let listedFrom;
/** call_id -> the card's state and elements */
const cards = new Map();
/** segment id -> the transcript line */
const lines = new Map();

// -- joining and leaving

async function join() {
  $('join').disabled = true;
  clearView();
  setStatus('Connecting…');
  room = new Room();
  // the click that joins is the gesture that lets the page play the agent's audio
  room.startAudio().catch(() => {});
  wire(room);
  try {
    const query = new URLSearchParams();
    for (const name of ['room', 'identity']) {
      if (params.get(name)) query.set(name, params.get(name));
    }
    const response = await fetch(`token?${query}`);
    if (!response.ok) throw new Error(`the token endpoint answered ${response.status}`);
    const { url, token } = await response.json();
    await room.connect(url, token);
  } catch (error) {
    setStatus(`Could not join: ${error.message}`, 'error');
    console.warn('could not join', error);
    room = undefined;
    $('join').disabled = false;
    return;
  }
  $('join').hidden = true;
  $('leave').hidden = false;
  $('say').hidden = false;
  setStatus(`In room ${room.name} as ${room.localParticipant.identity}. Waiting for the agent…`);
  const present = [...room.remoteParticipants.values()].find((p) => p.isAgent);
  if (present) onAgent(present);
}

async function leave() {
  await room?.disconnect();
}

/** A new room, a new conversation: the last one's lines and cards go. */
function clearView() {
  lines.clear();
  cards.clear();
  $('transcript').replaceChildren();
  $('tasks').replaceChildren();
  $('transcript-empty').hidden = false;
  $('tasks-empty').hidden = false;
}

function wire(r) {
  r.on(RoomEvent.ConnectionStateChanged, (state) => {
    if (state === ConnectionState.Reconnecting) setStatus('Reconnecting…');
  });
  r.on(RoomEvent.Disconnected, () => {
    if (r !== room) return;
    room = undefined;
    agent = undefined;
    micOpened = false;
    listedFrom = undefined;
    renderAgentState();
    $('join').hidden = false;
    $('join').disabled = false;
    $('leave').hidden = true;
    $('say').hidden = true;
    setStatus('Left the room.');
  });
  r.on(RoomEvent.ParticipantConnected, (participant) => {
    if (participant.isAgent) onAgent(participant);
  });
  r.on(RoomEvent.ParticipantDisconnected, (participant) => {
    if (participant !== agent) return;
    agent = undefined;
    renderAgentState();
    setStatus('The agent left the room.');
    for (const card of cards.values()) renderCard(card);
  });
  r.on(RoomEvent.ParticipantAttributesChanged, (_changed, participant) => {
    if (participant === agent) agentStateChanged();
  });
  r.on(RoomEvent.TrackSubscribed, (track) => {
    if (track.kind === Track.Kind.Audio) $('audio').append(track.attach());
  });
  r.on(RoomEvent.TrackUnsubscribed, (track) => {
    for (const element of track.detach()) element.remove();
  });
  r.on(RoomEvent.AudioPlaybackStatusChanged, () => {
    if (!r.canPlaybackAudio) setStatus('Click anywhere to hear the agent.');
  });
  r.registerTextStreamHandler(TRANSCRIPTION_TOPIC, (reader, sender) =>
    onTranscription(r, reader, sender),
  );
  r.registerTextStreamHandler(TASKS_TOPIC, (reader, sender) => onTaskMessage(r, reader, sender));
}

document.addEventListener('click', () => {
  if (room && !room.canPlaybackAudio) room.startAudio().catch(() => {});
});

// -- the agent

function onAgent(participant) {
  agent = participant;
  setStatus(`The agent (${participant.identity}) joined.`);
  for (const card of cards.values()) renderCard(card);
  agentStateChanged();
}

function agentStateChanged() {
  renderAgentState();
  const state = agent?.attributes[AGENT_STATE];
  // the agent hears nothing said before its session listens, nor answers RPCs before it
  if (!state || state === 'initializing') return;
  if (!micOpened) {
    micOpened = true;
    openMicrophone();
  }
  if (listedFrom !== agent.identity) {
    listedFrom = agent.identity;
    listTasks();
  }
}

function renderAgentState() {
  const chip = $('agent-state');
  const state = agent?.attributes[AGENT_STATE];
  chip.hidden = !agent;
  chip.textContent = `Agent: ${state ?? 'joining'}`;
  chip.dataset.state = state ?? '';
}

async function openMicrophone() {
  try {
    await room.localParticipant.setMicrophoneEnabled(true);
    setStatus('Microphone on: talk to the agent.');
  } catch (error) {
    setStatus(`The microphone could not be opened: ${error.message}`, 'error');
    console.warn('microphone', error);
  }
}

// -- transcript

/** One stream on `lk.transcription`: a segment's text (a whole segment or its latest
 *  version: a segment's line shows the text of its latest stream). */
async function onTranscription(r, reader, participantInfo) {
  const attributes = reader.info.attributes ?? {};
  const segmentId = attributes['lk.segment_id'] ?? reader.info.id;
  const who = speakerOf(r, attributes['lk.transcribed_track_id'], participantInfo.identity);
  const line = transcriptLine(segmentId, who);
  let text = '';
  for await (const chunk of reader) {
    if (r !== room) return; // the page left that room meanwhile
    text += chunk;
    renderLine(line, text, false);
  }
  if (r !== room) return;
  // the closing trailer's attributes are merged into the stream's
  renderLine(line, text, reader.info.attributes?.['lk.transcription_final'] === 'true');
}

function speakerOf(r, trackId, identity) {
  const local = r.localParticipant;
  if (trackId) {
    if (local.trackPublications.has(trackId)) return 'user';
    for (const participant of r.remoteParticipants.values()) {
      if (participant.trackPublications.has(trackId)) {
        return participant.isAgent ? 'agent' : 'other';
      }
    }
  }
  return identity === local.identity ? 'user' : 'agent';
}

function transcriptLine(segmentId, who) {
  let line = lines.get(segmentId);
  if (!line) {
    const element = document.createElement('li');
    element.className = `line ${who}`;
    element.dataset.segment = segmentId;
    element.dataset.speaker = who;
    const name = document.createElement('span');
    name.className = 'who';
    name.textContent = { user: 'You', agent: 'Agent', other: 'Someone' }[who];
    const text = document.createElement('span');
    text.className = 'text';
    element.append(name, text);
    line = { element, text };
    lines.set(segmentId, line);
  }
  return line;
}

function renderLine(line, text, final) {
  line.text.textContent = text;
  line.element.dataset.final = String(final);
  if (text.trim() && !line.element.isConnected) {
    $('transcript').append(line.element);
    $('transcript-empty').hidden = true;
  }
  line.element.scrollIntoView({ block: 'nearest' });
}

// -- typing instead of speaking

const CHAT_TOPIC = 'lk.chat';
let typed = 0;

async function say(event) {
  event.preventDefault();
  const input = $('say-text');
  const text = input.value.trim();
  if (!text || !room) return;
  input.value = '';
  // the agent reads the linked participant's chat as a user turn
  await room.localParticipant.sendText(text, { topic: CHAT_TOPIC });
  typed += 1;
  renderLine(transcriptLine(`typed-${typed}`, 'user'), text, true);
}

$('say').addEventListener('submit', (event) => {
  say(event).catch((error) => console.warn('could not send the message', error));
});

// -- background tasks

async function onTaskMessage(r, reader, participantInfo) {
  const text = await reader.readAll();
  if (r !== room) return; // the page left that room meanwhile
  // anyone in the room can write on a topic: only the agent's messages are believed
  const sender = r.remoteParticipants.get(participantInfo.identity);
  if (!sender?.isAgent) {
    console.warn(`task feed: ignored a message from ${participantInfo.identity}, not the agent`);
    return;
  }
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    console.warn('task feed: a message that is not JSON', text);
    return;
  }
  if (message?.v !== SCHEMA_VERSION) {
    console.warn(`task feed: version ${message?.v}, this page reads v${SCHEMA_VERSION}`);
    return;
  }
  if (message.event === 'reply') {
    for (const callId of message.call_ids ?? []) {
      const card = cards.get(callId);
      if (card && isNewer(card.replySeq, message.seq)) {
        card.replySeq = message.seq;
        card.reply = message.status;
        renderCard(card);
      }
    }
  } else if (message.task) {
    showTask(message.task, message.seq);
  }
}

/** Each message is its own stream, and streams can finish out of order: a card keeps
 *  the message with the highest `seq` (a list answer has none, and never replaces). */
function isNewer(shown, seq) {
  return shown === undefined || (typeof seq === 'number' && seq > shown);
}

async function listTasks(attempt = 1) {
  if (!agent) return;
  try {
    const answer = JSON.parse(
      await room.localParticipant.performRpc({
        destinationIdentity: agent.identity,
        method: RPC_LIST_TASKS,
        payload: JSON.stringify({ v: SCHEMA_VERSION }),
      }),
    );
    for (const task of answer.tasks ?? []) {
      // a call the feed already showed is left as the feed shows it
      if (!cards.has(task.call_id)) showTask(task, undefined);
    }
  } catch (error) {
    if (error instanceof RpcError && error.code === RpcError.ErrorCode.UNSUPPORTED_METHOD) {
      if (attempt < LIST_RETRIES) {
        setTimeout(() => listTasks(attempt + 1), LIST_RETRY_MS);
      } else {
        setStatus('This agent does not publish its background tasks.');
      }
      return;
    }
    console.warn('could not list the tasks', error);
    setStatus(`Could not list the tasks: ${error.message}`, 'error');
  }
}

function showTask(task, seq) {
  let card = cards.get(task.call_id);
  if (!card) {
    card = newCard(task.call_id);
    cards.set(task.call_id, card);
  } else if (!isNewer(card.seq, seq)) {
    return;
  }
  card.seq = seq;
  const fraction = task.progress?.fraction;
  if (typeof fraction === 'number') card.fraction = fraction;
  card.task = task;
  renderCard(card);
}

function newCard(callId) {
  const element = $('task-template').content.firstElementChild.cloneNode(true);
  element.dataset.callId = callId;
  const card = {
    element,
    task: undefined,
    seq: undefined,
    fraction: undefined,
    reply: undefined,
    replySeq: undefined,
    cancelling: false,
    error: undefined,
  };
  element.querySelector('.cancel').addEventListener('click', () => cancelTask(card));
  $('tasks').append(element);
  $('tasks-empty').hidden = true;
  return card;
}

function renderCard(card) {
  const { element, task } = card;
  const find = (selector) => element.querySelector(selector);
  element.dataset.function = task.function;
  element.dataset.status = task.status;
  if (card.fraction !== undefined) element.dataset.fraction = String(card.fraction);
  find('.function').textContent = humanize(task.function);
  find('.status').textContent = task.status.replace('_', ' ');
  find('.call-id').textContent =
    task.call_id + (task.timeout != null ? ` · gives up after ${task.timeout} s` : '');

  const bar = find('.bar');
  if (task.status === 'done') {
    bar.value = 1;
  } else if (card.fraction !== undefined) {
    bar.value = card.fraction;
  } else if (task.status === 'running') {
    bar.removeAttribute('value'); // indeterminate: running, no fraction given
  } else {
    bar.value = 0;
  }
  bar.setAttribute('aria-label', `${humanize(task.function)}: ${task.status}`);

  const progress = task.progress ?? {};
  const left = progress.seconds_left;
  const eta = typeof left === 'number' ? `about ${Math.round(left)} s left` : null;
  const stage = [progress.stage, eta];
  find('.stage').textContent = stage.filter(Boolean).join(' · ') || '–';
  find('.last-update').textContent = task.last_update
    ? task.last_update + (task.last_update_delivery === 'silent' ? ' (for the agent only)' : '')
    : '–';

  const hasResult = task.result !== undefined && task.result !== null;
  find('.result-label').hidden = !hasResult;
  find('.result').hidden = !hasResult;
  if (hasResult) find('.result').textContent = describeResult(task.result);

  find('.reply-label').hidden = !card.reply;
  find('.reply').hidden = !card.reply;
  if (card.reply) find('.reply').textContent = REPLY_TEXT[card.reply] ?? card.reply;

  const cancel = find('.cancel');
  cancel.hidden = !(task.status === 'running' && task.cancellable);
  cancel.disabled = card.cancelling || !agent;
  cancel.textContent = card.cancelling ? 'Cancelling…' : 'Cancel';

  const error = find('.error');
  error.hidden = !card.error;
  error.textContent = card.error ?? '';
}

async function cancelTask(card) {
  const callId = card.task.call_id;
  card.cancelling = true;
  card.error = undefined;
  renderCard(card);
  try {
    if (!agent) throw new Error('the agent is not in the room');
    const answer = JSON.parse(
      await room.localParticipant.performRpc({
        destinationIdentity: agent.identity,
        method: RPC_CANCEL_TASK,
        payload: JSON.stringify({ v: SCHEMA_VERSION, call_id: callId }),
      }),
    );
    // the feed's `ended` message says the same; whichever comes first is shown
    if (answer.status && card.task.status === 'running') {
      card.task = { ...card.task, status: answer.status };
    }
  } catch (error) {
    const code = error instanceof RpcError ? ` (${error.code})` : '';
    card.error = `Not cancelled: ${error.message}${code}`;
  }
  card.cancelling = false;
  renderCard(card);
}

function humanize(name) {
  const words = name.replaceAll('_', ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function describeResult(result) {
  if (result && typeof result === 'object' && !Array.isArray(result)) {
    const text = (value) => (typeof value === 'string' ? value : JSON.stringify(value));
    return Object.entries(result)
      .map(([key, value]) => `${humanize(key)}: ${text(value)}`)
      .join(', ');
  }
  return typeof result === 'string' ? result : JSON.stringify(result);
}

// -- the page

function setStatus(text, kind = 'info') {
  const status = $('status');
  status.textContent = text;
  status.dataset.kind = kind;
}

$('join').addEventListener('click', join);
$('leave').addEventListener('click', leave);
$('join').disabled = false;
setStatus('Ready: join the room to talk to the agent.');
