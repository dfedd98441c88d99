"""The official SDKs (openai, anthropic) against larder in front of the provider stand-in.

Every answer larder gives — filled as JSON or as a stream, replayed in the same shape or
converted — must parse in the SDK and say the same thing. Run by tests/sdk.rs with
LARDER_URL set; exits non-zero on the first difference.
"""

import os
import sys

import anthropic
import openai

BASE = os.environ["LARDER_URL"]
failures = []


def check(name, cond, detail=""):
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else f": {detail}"))
    if not cond:
        failures.append(name)


def chat_text(client, prompt, stream, **kw):
    msgs = [{"role": "user", "content": prompt}]
    if not stream:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, **kw)
        return r.choices[0].message.content, r.choices[0].finish_reason, r.usage, None
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = [c.usage for c in chunks if c.usage]
    return text, finish[-1] if finish else None, usage[-1] if usage else None, chunks


oa = openai.OpenAI(base_url=BASE + "/v1", api_key="sk-sdk", max_retries=0)

# A stream fills; JSON, a stream without usage and one with usage replay it.
t1, f1, _, chunks = chat_text(oa, "sdk stream first", True)
check("chat stream (miss) parses", t1 == "Echo: sdk stream first" and f1 == "stop", (t1, f1))
check("chat stream (miss) has no usage chunk nobody asked for", all(not c.usage for c in chunks))
t2, f2, u2, _ = chat_text(oa, "sdk stream first", False)
check("chat JSON from a stream parses", t2 == t1 and f2 == "stop" and u2.prompt_tokens == 12, (t2, f2, u2))
t3, _, u3, _ = chat_text(oa, "sdk stream first", True, stream_options={"include_usage": True})
check("chat stream with usage replays it", t3 == t1 and u3 is not None and u3.completion_tokens == 4, (t3, u3))

# A JSON answer fills; a stream replays it.
t4, _, _, _ = chat_text(oa, "sdk json first", False)
t5, f5, u5, chunks5 = chat_text(oa, "sdk json first", True, stream_options={"include_usage": True})
check("chat stream from JSON parses", t5 == t4 == "Echo: sdk json first" and f5 == "stop", (t4, t5, f5))
check("chat stream from JSON starts with the role", chunks5[0].choices[0].delta.role == "assistant")
check("chat stream from JSON carries the usage", u5 is not None and u5.prompt_tokens == 12, u5)

# Responses: a stream fills, JSON replays; then the other way round.
events = list(oa.responses.create(model="gpt-4o-mini", input="sdk responses", stream=True))
done = [e for e in events if e.type == "response.completed"]
check("responses stream parses", bool(done) and done[0].response.output_text == "Echo: sdk responses",
      [e.type for e in events])
r = oa.responses.create(model="gpt-4o-mini", input="sdk responses")
check("responses JSON from a stream parses", r.output_text == "Echo: sdk responses" and r.status == "completed",
      r)
r2 = oa.responses.create(model="gpt-4o-mini", input="sdk responses json first")
with oa.responses.stream(model="gpt-4o-mini", input="sdk responses json first") as s:
    deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
    final = s.get_final_response()
check("responses stream from JSON parses", deltas == r2.output_text == final.output_text, (deltas, r2.output_text))

# Anthropic: JSON fills, the streaming helper and a raw stream replay it; a stream fills,
# JSON replays it.
an = anthropic.Anthropic(base_url=BASE, api_key="ak-sdk", max_retries=0)
msgs = [{"role": "user", "content": "sdk messages"}]
m = an.messages.create(model="claude-3-5-haiku", max_tokens=64, messages=msgs)
check("messages JSON parses", m.content[0].text == "Echo: sdk messages" and m.stop_reason == "end_turn", m)
with an.messages.stream(model="claude-3-5-haiku", max_tokens=64, messages=msgs) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
check("messages stream from JSON parses", text == m.content[0].text and final.usage.output_tokens == 4,
      (text, final.usage))
raw = list(an.messages.create(model="claude-3-5-haiku", max_tokens=64, stream=True,
                              messages=[{"role": "user", "content": "sdk messages stream first"}]))
check("messages raw stream parses", raw[0].type == "message_start" and raw[-1].type == "message_stop",
      [e.type for e in raw])
m2 = an.messages.create(model="claude-3-5-haiku", max_tokens=64,
                        messages=[{"role": "user", "content": "sdk messages stream first"}])
check("messages JSON from a stream parses", m2.content[0].text == "Echo: sdk messages stream first", m2)

if failures:
    print(f"{len(failures)} failed: {failures}")
    sys.exit(1)
print("all SDK checks passed")
