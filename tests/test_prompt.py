"""The typed API the generation code uses."""

from prompt_parser import ExtraNetwork, ScheduledText, Timeline, old_timelines_differ, parse_prompt


def test_schedule_holds_parts_texts_and_networks():
    schedule = parse_prompt("<lora:foo:0.8>a [cat:dog:0.5] :1.2 AND [b|c]", 4)
    assert schedule.steps == 4
    assert schedule.extra_networks == (ExtraNetwork("lora", ("foo", "0.8")),)
    first, second = schedule.parts
    assert first.weight == 1.2
    assert first.schedule == (ScheduledText(2, "a cat"), ScheduledText(4, "a dog"))
    assert second.weight == 1.0
    assert [e.text for e in second.schedule] == [" b", " c", " b", " c"]
    assert schedule.texts == ("a cat", "a dog", " b", " c")


def test_lookup_follows_a1111_call_counter():
    # Calls count from 0 and take the first entry ending at or after the count, so the
    # sequence for [a|b] is a, a, b, a, b.
    part = parse_prompt("[a|b]", 5).parts[0]
    assert [part.text_at(call) for call in range(5)] == ["a", "a", "b", "a", "b"]
    assert part.text_at(99) == "a"  # past the end the last entry (step 5) holds


def test_at_gives_every_part():
    schedule = parse_prompt("[x:y:2] AND z:0.5", 4)
    assert schedule.at(0) == (("x", 1.0), (" z", 0.5))
    assert schedule.at(3) == (("y", 1.0), (" z", 0.5))


def test_negative_prompt_is_not_split_and_keeps_tags():
    schedule = parse_prompt("ugly AND blurry <lora:x:1> [a:b:2]", 4, negative=True)
    assert len(schedule.parts) == 1 and schedule.parts[0].weight == 1.0
    assert schedule.extra_networks == ()
    assert schedule.parts[0].schedule[0].text == "ugly AND blurry <lora:x:1> a"


def test_hires_and_old_timelines():
    assert parse_prompt("[a:b:1.5]", 20, 10).timeline == Timeline(20, 10)
    assert [e.end_step for e in parse_prompt("[a:b:1.5]", 20, 10).parts[0].schedule] == [5, 10]
    assert [e.end_step for e in parse_prompt("[a:b:1.5]", 20, 10, old_timelines=True).parts[0].schedule] == [1, 20]


def test_old_timelines_differ():
    assert old_timelines_differ("[a:b:1.5]", 10)
    assert not old_timelines_differ("[a:b:0.5]", 10)
    assert not old_timelines_differ("no editing", 10)
    # In a hires pass even plain text differs: the old mode spans the first pass's steps.
    assert old_timelines_differ("no editing", 10, 5)
