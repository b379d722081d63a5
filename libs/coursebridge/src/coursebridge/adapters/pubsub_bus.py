"""The ``MessageBus`` port on Google Cloud Pub/Sub (or its emulator, found through ``PUBSUB_EMULATOR_HOST``).

Publishing validates the event, sends it with the CloudEvents binary binding (``Event.to_wire``) and
waits for the server's ack, bounded by ``publish_timeout``: any failure becomes ``BusUnavailable`` so the
caller (the outbox relay) keeps the event and tries again.

Subscribing uses StreamingPull. A message is acked only after its handler returned. Beyond what the
client library does by itself, the adapter:

* keeps publish order per ordering key across retries *and counts attempts by handler runs*. On an
  ordered subscription a failed message of a key is neither acked nor nacked: the adapter runs its
  handler again itself after the subscription's backoff, while the client library holds the key's later
  messages back and keeps extending their ack deadlines. Nothing is redelivered, so the later messages'
  delivery count does not grow while they wait and a message is only ever dead-lettered after its own
  handler failed ``max_delivery_attempts`` times (as on the embedded bus). Held messages only go back to
  Pub/Sub when the subscriber stops; their count then restarts on the next consumer (the subscription's
  own dead-letter policy, counting deliveries, stays the safety net for a consumer that keeps crashing).
  Messages without an ordering key are nacked and redelivered by Pub/Sub: every delivery runs the handler.
* dead-letters itself: a ``PermanentFailure`` (or a message that is not a valid event) is published to
  the subscription's dead-letter topic with a ``coursebridge-dead-letter-reason`` attribute and acked;
  so is a message whose handler failed on its last allowed attempt (the subscription's
  ``max_delivery_attempts``). The subscription's own dead-letter policy stays as the safety net for
  consumers that die mid-message. (It also avoids a Pub/Sub emulator bug: dead-lettering from an
  ordered subscription crashes the emulator's pull for the whole subscription.)

Message bodies carry buyer personal data and are never logged.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.publisher.exceptions import PublishToPausedOrderingKeyException
from google.cloud.pubsub_v1.subscriber.message import Message
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

from coursebridge.events import Event, WireMessage, validate_event, validate_received
from coursebridge.ports import (
    DEAD_LETTER_REASON_ATTRIBUTE,
    BusUnavailable,
    Delivery,
    EventHandler,
    MessageBus,
    PermanentFailure,
    PublishRejected,
    SubscriptionRunner,
)
from coursebridge.topology import DEAD_LETTER_SUFFIX, TOPOLOGY, Topology

log = structlog.get_logger()

_MAX_REASON_BYTES = 1000
_ADMIN_TIMEOUT = 10.0
_CHECK_TIMEOUT = 5.0
_ACK_TIMEOUT = 60.0
_ADMIN_RETRY = gretry.Retry(initial=0.1, maximum=1.0, multiplier=2.0, timeout=_ADMIN_TIMEOUT)
_TRANSIENT = (
    PublishToPausedOrderingKeyException,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.Aborted,
    gexc.ResourceExhausted,
    gexc.Unknown,
    gexc.Cancelled,
)


def _truncate(text: str, limit: int = _MAX_REASON_BYTES) -> str:
    """At most ``limit`` UTF-8 bytes (Pub/Sub caps an attribute value at 1024 bytes)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class _SubscriptionSettings:
    ordered: bool
    dead_letter_topic: str  # full path
    max_delivery_attempts: int | None  # None: no dead-letter policy known, Pub/Sub decides
    max_backoff_seconds: float
    ack_deadline_seconds: int
    min_backoff_seconds: float = 10.0

    def backoff(self, attempt: int) -> float:
        """Wait before running a failed handler again, as Pub/Sub's exponential retry policy would."""
        return min(self.max_backoff_seconds, self.min_backoff_seconds * 2 ** max(0, attempt - 1))


@dataclass
class _HeldRetry:
    """A failed ordered message this process keeps (unsettled) until its handler runs again."""

    message: Message
    wire: WireMessage
    event: Event
    attempt: int  # handler runs so far
    timer: threading.Timer


STREAM_RESTART_MAX_SECONDS = 30.0


class PubSubRunner(SubscriptionRunner):
    def __init__(
        self,
        bus: PubSubBus,
        subscription: str,
        handler: EventHandler,
        settings: _SubscriptionSettings,
    ) -> None:
        self._bus = bus
        self._subscription = subscription
        self._handler = handler
        self._settings = settings
        self._stopping = threading.Event()
        self._stop_lock = threading.Lock()
        self._thread_prefix = f"pubsub-{subscription}-{id(self):x}"
        self._future: pubsub_v1.subscriber.futures.StreamingPullFuture | None = None
        # Failed ordered messages waiting for their next handler run, and handler runs of retries under way.
        self._held: dict[str, _HeldRetry] = {}
        self._retrying = 0
        self._held_lock = threading.Condition()
        self._restart: tuple[pubsub_v1.SubscriberClient, str, int] | None = None
        self._restarts = 0

    def _start(self, subscriber: pubsub_v1.SubscriberClient, path: str, max_in_flight: int) -> None:
        self._restart = (subscriber, path, max_in_flight)
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, max_in_flight), thread_name_prefix=self._thread_prefix
        )
        # A held message's lease is extended for at most this long: more than all its retries can take.
        retry_budget = sum(self._settings.backoff(n) for n in range(1, self._attempt_limit() + 1))
        self._future = subscriber.subscribe(
            path,
            callback=self._on_message,
            flow_control=pubsub_v1.types.FlowControl(
                max_messages=max(1, max_in_flight),
                # The client's stream ack deadline is 60 s whatever the subscription says; hold it to the
                # subscription's deadline so messages of a consumer that went away come back that soon.
                max_duration_per_lease_extension=self._settings.ack_deadline_seconds,
                max_lease_duration=max(3600, int(retry_budget * 2) + 600),
            ),
            scheduler=ThreadScheduler(executor=executor),
            await_callbacks_on_shutdown=True,
        )
        self._future.add_done_callback(self._on_stream_done)

    def _attempt_limit(self) -> int:
        return self._settings.max_delivery_attempts or 5

    # --- lifecycle ---------------------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> None:
        with self._stop_lock:
            self._stopping.set()
            future = self._future
            if future is None:
                return
            self._release_held()
            future.cancel()  # idempotent: starts the shutdown in the background
        if threading.current_thread().name.startswith(self._thread_prefix):
            return  # called from a handler: waiting for the handlers to finish would wait for ourselves
        with self._held_lock:
            self._held_lock.wait_for(lambda: self._retrying == 0, timeout=timeout)
        try:
            future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            log.warning("bus.subscription.stop_timeout", subscription=self._subscription, timeout=timeout)
        except Exception as error:
            log.warning(
                "bus.subscription.stream_failed", subscription=self._subscription, error=_error_text(error)
            )

    def _release_held(self) -> None:
        """Give held messages back to Pub/Sub (nack) so another consumer takes them, in order, at once."""
        with self._held_lock:
            held, self._held = list(self._held.values()), {}
        for retry in held:
            retry.timer.cancel()
            retry.message.nack()

    def running(self) -> bool:
        return self._future is not None and not self._future.done() and not self._stopping.is_set()

    def _on_stream_done(self, future: concurrent.futures.Future[Any]) -> None:
        if self._stopping.is_set():
            return
        error = future.exception() if not future.cancelled() else None
        self._restarts += 1
        delay = min(STREAM_RESTART_MAX_SECONDS, 2.0 ** min(self._restarts, 5))
        log.error(
            "bus.subscription.stream_ended",
            subscription=self._subscription,
            error=_error_text(error) if error else None,
            restart_in_seconds=delay,
        )
        self._release_held()
        # The stream gave up (e.g. the subscription was deleted and is being re-created, or an outage
        # outlasted the client's retries): subscribe again rather than stay deaf until a restart.
        timer = threading.Timer(delay, self._resubscribe)
        timer.daemon = True
        timer.start()

    def _resubscribe(self) -> None:
        with self._stop_lock:
            if self._stopping.is_set() or self._restart is None:
                return
            log.info("bus.subscription.restarting", subscription=self._subscription, restarts=self._restarts)
            self._start(*self._restart)

    # --- delivery ----------------------------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        key = message.ordering_key or None
        if self._stopping.is_set():
            message.nack()
            return
        # Messages without a key are retried by Pub/Sub, so each delivery is one more handler run; ordered
        # ones are retried here (see the module docstring), so their first delivery here is run one.
        attempt = 1 if self._held_locally(key) else (message.delivery_attempt or 1)
        context = self._context(message, attempt)
        wire = WireMessage(data=bytes(message.data), attributes=dict(message.attributes))
        try:
            event = Event.from_wire(wire)
            validate_received(event)  # an unknown type passes: a newer producer, for the handler to ignore
        except ValueError as error:  # InvalidEvent is a ValueError too
            log.error("bus.message.undecodable", error=_error_text(error), **context)
            self._dead_letter(message, wire, f"undecodable: {error}", key, context)
            return
        self._run(message, wire, event, attempt)

    def _held_locally(self, key: str | None) -> bool:
        return key is not None and self._settings.ordered

    def _context(self, message: Message, attempt: int) -> dict[str, Any]:
        return {
            "subscription": self._subscription,
            "message_id": message.message_id,
            "attempt": attempt,
            "event_type": message.attributes.get("ce-type"),
            "event_id": message.attributes.get("ce-id"),
        }

    def _run(self, message: Message, wire: WireMessage, event: Event, attempt: int) -> None:
        """One handler run, then ack, dead-letter or retry."""
        key = message.ordering_key or None
        context = self._context(message, attempt)
        delivery = Delivery(self._subscription, message.message_id, attempt, key, wire.attributes)
        try:
            self._handler(event, delivery)
        except PermanentFailure as error:
            log.error("bus.message.permanent_failure", error=_error_text(error), **context)
            self._dead_letter(message, wire, str(error) or type(error).__name__, key, context)
            return
        except Exception as error:
            last = self._settings.max_delivery_attempts
            if last is not None and attempt >= last:
                log.error("bus.message.attempts_exhausted", error=_error_text(error), **context)
                reason = f"gave up after {attempt} handler attempts: {_error_text(error)}"
                self._dead_letter(message, wire, reason, key, context)
            else:
                log.warning("bus.message.failed", error=_error_text(error), **context)
                self._retry_later(message, wire, event, attempt)
            return
        self._ack(message, context)

    def _ack(self, message: Message, context: Mapping[str, Any]) -> None:
        try:
            # Immediate unless the subscription has exactly-once delivery, where it waits for the server.
            message.ack_with_response().result(timeout=_ACK_TIMEOUT)
        except Exception as error:
            log.warning("bus.message.ack_failed", error=_error_text(error), **context)

    def _retry_later(self, message: Message, wire: WireMessage, event: Event, attempt: int) -> None:
        if not self._held_locally(message.ordering_key or None) or self._stopping.is_set():
            message.nack()
            return
        delay = self._settings.backoff(attempt)
        timer = threading.Timer(delay, self._retry_now, args=(message.message_id,))
        timer.name = f"{self._thread_prefix}-retry"
        timer.daemon = True
        with self._held_lock:
            self._held[message.message_id] = _HeldRetry(message, wire, event, attempt, timer)
        timer.start()

    def _retry_now(self, message_id: str) -> None:
        with self._held_lock:
            retry = self._held.pop(message_id, None)
            if retry is None:  # released by stop() in the meantime
                return
            self._retrying += 1
        try:
            self._run(retry.message, retry.wire, retry.event, retry.attempt + 1)
        except Exception as error:  # never lose a held message to a bug in the retry path
            log.error("bus.message.retry_failed", error=_error_text(error), subscription=self._subscription)
            retry.message.nack()
        finally:
            with self._held_lock:
                self._retrying -= 1
                self._held_lock.notify_all()

    def _dead_letter(
        self,
        message: Message,
        wire: WireMessage,
        reason: str,
        key: str | None,
        context: Mapping[str, Any],
    ) -> None:
        topic = self._settings.dead_letter_topic
        attributes = {
            **wire.attributes,
            DEAD_LETTER_REASON_ATTRIBUTE: _truncate(reason),
            # What Pub/Sub itself adds when its dead-letter policy forwards a message:
            "CloudPubSubDeadLetterSourceSubscription": self._subscription,
            "CloudPubSubDeadLetterSourceDeliveryCount": str(context.get("attempt") or 1),
        }
        try:
            self._bus._publish_wire(topic, WireMessage(wire.data, attributes), key)
        except BusUnavailable as error:
            log.error(
                "bus.message.dead_letter_failed",
                dead_letter_topic=topic,
                error=_error_text(error.__cause__ or error),
                **context,
            )
            message.nack()  # Pub/Sub redelivers it (in order): its handler runs again, then this again
            return
        log.warning("bus.message.dead_lettered", dead_letter_topic=topic, **context)
        self._ack(message, context)


class PubSubBus(MessageBus):
    def __init__(self, project: str, *, publish_timeout: float = 10.0) -> None:
        self.project = project
        self.publish_timeout = publish_timeout
        self._publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self._subscriber = pubsub_v1.SubscriberClient()
        self._topology: Topology | None = None
        self._runners: list[PubSubRunner] = []
        self._lock = threading.Lock()
        self._closed = False

    # --- paths -------------------------------------------------------------------------------------------

    def topic_path(self, topic: str) -> str:
        return self._publisher.topic_path(self.project, topic)

    def subscription_path(self, subscription: str) -> str:
        return self._subscriber.subscription_path(self.project, subscription)

    # --- publish -----------------------------------------------------------------------------------------

    def publish(self, topic: str, event: Event, ordering_key: str | None = None) -> str:
        validate_event(event)  # a producer bug, not an outage: InvalidEvent propagates
        message_id = self._publish_wire(self.topic_path(topic), event.to_wire(), ordering_key)
        log.debug(
            "bus.published", topic=topic, event_type=event.type, event_id=event.id, message_id=message_id
        )
        return message_id

    def _publish_wire(self, path: str, wire: WireMessage, ordering_key: str | None) -> str:
        """Publish and wait for the server; retry transient errors, all within ``publish_timeout``.

        ``PublishRejected`` when Pub/Sub refuses the message itself (InvalidArgument), else
        ``BusUnavailable``.

        The client's own retry is switched off: with message ordering enabled it retries a publish forever,
        so a publish to an unreachable Pub/Sub would neither fail in time nor let the key's next message
        through. A publish that timed out may still have reached Pub/Sub: the caller's retry can then make
        a duplicate, which at-least-once consumers absorb.
        """
        topic = path.rsplit("/", 1)[-1]
        key = ordering_key or ""
        deadline = time.monotonic() + self.publish_timeout
        pause = 0.1
        while True:
            remaining = max(0.5, deadline - time.monotonic())
            try:
                future = self._publisher.publish(
                    path, wire.data, ordering_key=key, retry=None, timeout=remaining, **wire.attributes
                )
                return str(future.result(timeout=remaining + 1.0))
            except Exception as error:
                if key:
                    self._resume(path, key)  # a failed publish pauses its key in the client
                if isinstance(error, gexc.InvalidArgument):  # this message can never be published
                    log.error("bus.publish_rejected", topic=topic, error=_error_text(error))
                    raise PublishRejected(f"{topic} refused the message: {_error_text(error)}") from error
                retry = isinstance(error, _TRANSIENT) and time.monotonic() + pause < deadline
                if not retry:
                    log.warning("bus.publish_failed", topic=topic, error=_error_text(error))
                    raise BusUnavailable(f"could not publish to {topic}: {_error_text(error)}") from error
            time.sleep(pause)
            pause = min(2 * pause, 1.0)

    def _resume(self, path: str, key: str) -> None:
        with contextlib.suppress(RuntimeError, ValueError):  # not paused (yet), or the publisher stopped
            self._publisher.resume_publish(path, key)

    # --- subscribe ---------------------------------------------------------------------------------------

    def subscribe(
        self, subscription: str, handler: EventHandler, *, max_in_flight: int = 10
    ) -> SubscriptionRunner:
        settings = self._settings_for(subscription)
        runner = PubSubRunner(self, subscription, handler, settings)
        with self._lock:
            if self._closed:
                raise BusUnavailable("the bus is closed")
            self._runners.append(runner)
        runner._start(self._subscriber, self.subscription_path(subscription), max_in_flight)
        log.info(
            "bus.subscribed",
            subscription=subscription,
            ordered=settings.ordered,
            max_delivery_attempts=settings.max_delivery_attempts,
            max_in_flight=max_in_flight,
        )
        return runner

    def _settings_for(self, subscription: str) -> _SubscriptionSettings:
        """The subscription as Pub/Sub has it; the topology when we may not read it (no get permission)."""
        default_dead_letter = self.topic_path(subscription + DEAD_LETTER_SUFFIX)
        try:
            found = self._subscriber.get_subscription(
                subscription=self.subscription_path(subscription), timeout=_ADMIN_TIMEOUT, retry=_ADMIN_RETRY
            )
        except gexc.NotFound as error:
            raise LookupError(f"subscription {subscription!r} does not exist") from error
        except gexc.GoogleAPICallError as error:
            log.info(
                "bus.subscription.settings_from_topology", subscription=subscription, error=_error_text(error)
            )
        else:
            policy = found.dead_letter_policy
            has_policy = bool(policy.dead_letter_topic)
            max_backoff = found.retry_policy.maximum_backoff
            min_backoff = found.retry_policy.minimum_backoff
            return _SubscriptionSettings(
                ordered=bool(found.enable_message_ordering),
                dead_letter_topic=policy.dead_letter_topic or default_dead_letter,
                max_delivery_attempts=(policy.max_delivery_attempts or 5) if has_policy else None,
                max_backoff_seconds=max_backoff.total_seconds() if max_backoff else 600.0,
                ack_deadline_seconds=found.ack_deadline_seconds or 10,
                min_backoff_seconds=min_backoff.total_seconds() if min_backoff else 10.0,
            )
        for topology in (self._topology, TOPOLOGY):
            if topology is None:
                continue
            try:
                known = topology.subscription(subscription)
            except KeyError:
                continue
            return _SubscriptionSettings(
                ordered=known.ordered,
                dead_letter_topic=self.topic_path(known.dead_letter_topic),
                max_delivery_attempts=known.max_delivery_attempts,
                max_backoff_seconds=known.max_backoff_seconds,
                ack_deadline_seconds=known.ack_deadline_seconds,
                min_backoff_seconds=known.min_backoff_seconds,
            )
        return _SubscriptionSettings(
            ordered=True,
            dead_letter_topic=default_dead_letter,
            max_delivery_attempts=None,
            max_backoff_seconds=600.0,
            ack_deadline_seconds=60,
        )

    # --- admin -------------------------------------------------------------------------------------------

    def provision(self, topology: Topology) -> None:
        self._topology = topology
        try:
            for topic in topology.all_topics():
                self._create_topic(topic)
            for sub in topology.subscriptions:
                self._create_subscription(
                    {
                        "name": self.subscription_path(sub.name),
                        "topic": self.topic_path(sub.topic),
                        "enable_message_ordering": sub.ordered,
                        "ack_deadline_seconds": sub.ack_deadline_seconds,
                        "dead_letter_policy": {
                            "dead_letter_topic": self.topic_path(sub.dead_letter_topic),
                            "max_delivery_attempts": sub.max_delivery_attempts,
                        },
                        "retry_policy": {
                            "minimum_backoff": timedelta(seconds=sub.min_backoff_seconds),
                            "maximum_backoff": timedelta(seconds=sub.max_backoff_seconds),
                        },
                    }
                )
            for sub in topology.subscriptions:
                self._create_subscription(
                    {
                        "name": self.subscription_path(sub.hold_subscription),
                        "topic": self.topic_path(sub.dead_letter_topic),
                        "ack_deadline_seconds": 60,
                    }
                )
        except gexc.GoogleAPICallError as error:
            raise BusUnavailable(f"could not provision Pub/Sub: {_error_text(error)}") from error

    def _create_topic(self, topic: str) -> None:
        with contextlib.suppress(gexc.AlreadyExists):
            self._publisher.create_topic(
                name=self.topic_path(topic), timeout=_ADMIN_TIMEOUT, retry=_ADMIN_RETRY
            )

    def _create_subscription(self, request: dict[str, Any]) -> None:
        with contextlib.suppress(gexc.AlreadyExists):
            self._subscriber.create_subscription(request=request, timeout=_ADMIN_TIMEOUT, retry=_ADMIN_RETRY)

    def check(self) -> None:
        try:
            pager = self._publisher.list_topics(
                request={"project": f"projects/{self.project}", "page_size": 1},
                timeout=_CHECK_TIMEOUT,
                retry=None,
            )
            next(iter(pager.pages), None)
        except gexc.PermissionDenied:
            return  # Pub/Sub answered: reachable, we are just not allowed to list
        except Exception as error:
            raise BusUnavailable(f"Pub/Sub unreachable: {_error_text(error)}") from error

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runners, self._runners = self._runners, []
        for runner in runners:
            runner.stop()
        try:
            self._publisher.stop()  # flushes pending batches
        except Exception as error:
            log.warning("bus.close_failed", error=_error_text(error))
        try:
            self._publisher.transport.close()
            self._subscriber.close()
        except Exception as error:
            log.debug("bus.close_failed", error=_error_text(error))
