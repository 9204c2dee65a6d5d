"""Each target's wire format: Slack Block Kit, a Teams Adaptive Card, or signed generic JSON.

Slack: an incoming webhook takes {"text": fallback, "blocks": [...]} (api.slack.com/messaging/webhooks,
api.slack.com/reference/block-kit/blocks); mrkdwn text escapes &, < and >.
Teams: a Workflows webhook ("When a Teams webhook request is received") takes a message whose
attachment is an Adaptive Card (adaptivecards.io, schema version 1.4).
Generic: the message as JSON, signed like Stripe and Slack sign theirs: HMAC-SHA256 over
"<timestamp>.<body>" in X-Errorreplay-Signature ("v1=<hex>"), the Unix time in X-Errorreplay-Timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from errorreplay_server.notify.config import Target, TargetKind
from errorreplay_server.notify.message import Message

MESSAGE_ID_HEADER = "X-Errorreplay-Message-Id"
SIGNATURE_HEADER = "X-Errorreplay-Signature"
TIMESTAMP_HEADER = "X-Errorreplay-Timestamp"
ADAPTIVE_CARD_VERSION = "1.4"
ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
# A receiver should refuse signatures older than this (replays of a captured request).
SIGNATURE_TOLERANCE_SECONDS = 300
# Slack's limits: a header's text is at most 150 characters, a section's text 3000.
SLACK_HEADER_CHARS = 150
SLACK_SECTION_CHARS = 3000


def payload(kind: TargetKind, message: Message) -> dict[str, Any]:
    if kind == TargetKind.SLACK:
        return slack_payload(message)
    if kind == TargetKind.TEAMS:
        return teams_payload(message)
    return message.as_json()


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def headers(target: Target, message_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The delivery's headers; a generic webhook's carry a fresh timestamp and its signature."""
    out = {"Content-Type": "application/json; charset=utf-8", MESSAGE_ID_HEADER: message_id}
    if target.kind == TargetKind.WEBHOOK:
        timestamp = str(int(time.time() if now is None else now))
        out[TIMESTAMP_HEADER] = timestamp
        out[SIGNATURE_HEADER] = sign(target.secret, timestamp, body)
    return out


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float | None = None,
    tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver runs: the signature matches and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


# --- Slack --------------------------------------------------------------------------------------
def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _verdict_lines(message: Message) -> list[str]:
    lines = []
    rc = message.root_cause
    if rc is not None:
        where = f" (origin `{slack_escape(rc.origin_resource_id)}`)" if rc.origin_resource_id else ""
        lines.append(f"*Root cause*{where}, {rc.confidence:.0%} confidence: {slack_escape(rc.summary)}")
        if rc.top_evidence:
            lines.append(f"> {slack_escape(rc.top_evidence)}")
    elif message.analysis_note:
        lines.append(f"*Root cause*: {slack_escape(message.analysis_note)}")
    else:
        lines.append("*Root cause*: not determined from the frozen context")
    return lines


def slack_payload(message: Message) -> dict[str, Any]:
    severity_emoji = {"CRITICAL": ":red_circle:", "HIGH": ":large_orange_circle:"}.get(message.severity, ":warning:")
    fields = [
        ("Service", message.service or "-"),
        ("Environment", message.environment or "-"),
        ("Severity", message.severity),
        ("Count", str(message.count)),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _plain(message.title, SLACK_HEADER_CHARS)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _plain(f"{severity_emoji} {slack_escape(message.message)}", 3000)},
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{slack_escape(value)}"} for name, value in fields],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _plain("\n".join(_verdict_lines(message)), 3000)}},
    ]
    if message.recommendations:
        first, *more = message.recommendations
        text = f"*Recommendation*: {slack_escape(first.title)}\n{slack_escape(first.rationale)}"
        if more:
            text += "\n*Then*: " + "; ".join(slack_escape(rec.title) for rec in more)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _plain(text, SLACK_SECTION_CHARS)}})
    if message.related_changes:
        lines = [
            f"• {c.kind} `{slack_escape(c.resource_id)}` {slack_escape(c.version)} at {c.occurred_at}:"
            f" {slack_escape(c.description)}"
            for c in message.related_changes
        ]
        text = "*Related changes*\n" + "\n".join(lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _plain(text, SLACK_SECTION_CHARS)}})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"rule `{slack_escape(message.rule)}` ({message.trigger}) · error `{message.error_id}`"
                    f" · {message.occurred_at}",
                }
            ],
        }
    )
    if message.replay_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open replay"}, "url": message.replay_url}
                ],
            }
        )
    fallback = f"[{message.severity}] {message.title} ({message.service or message.resource_id})"
    # The fallback is mrkdwn too (notifications, old clients): a group title's "<n>" must not become a link.
    return {"text": _plain(slack_escape(fallback), SLACK_SECTION_CHARS), "blocks": blocks}


# --- Microsoft Teams ----------------------------------------------------------------------------
def teams_payload(message: Message) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium", "wrap": True},
        {"type": "TextBlock", "text": message.message, "wrap": True},
        {
            "type": "FactSet",
            "facts": [
                {"title": "Service", "value": message.service or "-"},
                {"title": "Environment", "value": message.environment or "-"},
                {"title": "Severity", "value": message.severity},
                {"title": "Count", "value": str(message.count)},
            ],
        },
    ]
    rc = message.root_cause
    if rc is not None:
        origin = f" (origin {rc.origin_resource_id})" if rc.origin_resource_id else ""
        body.append(
            {
                "type": "TextBlock",
                "text": f"**Root cause**{origin}, {rc.confidence:.0%} confidence: {rc.summary}",
                "wrap": True,
            }
        )
        if rc.top_evidence:
            body.append({"type": "TextBlock", "text": rc.top_evidence, "isSubtle": True, "wrap": True})
    else:
        note = message.analysis_note or "not determined from the frozen context"
        body.append({"type": "TextBlock", "text": f"**Root cause**: {note}", "wrap": True})
    if message.recommendations:
        lines = [f"{i}. {rec.title}" for i, rec in enumerate(message.recommendations, 1)]
        body.append({"type": "TextBlock", "text": "**Recommendations**\n\n" + "\n".join(lines), "wrap": True})
    if message.related_changes:
        lines = [f"- {c.kind} {c.resource_id} {c.version}: {c.description}" for c in message.related_changes]
        body.append({"type": "TextBlock", "text": "**Related changes**\n\n" + "\n".join(lines), "wrap": True})
    body.append(
        {
            "type": "TextBlock",
            "text": f"rule {message.rule} ({message.trigger}) · error {message.error_id} · {message.occurred_at}",
            "isSubtle": True,
            "size": "Small",
            "wrap": True,
        }
    )
    card: dict[str, Any] = {
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "body": body,
    }
    if message.replay_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open replay", "url": message.replay_url}]
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }
