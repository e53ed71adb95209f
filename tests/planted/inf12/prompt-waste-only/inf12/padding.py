from solutions.inf12.padding import *  # noqa: F401,F403


def padding_waste(prompt_lens, output_lens):
    if len(prompt_lens) != len(output_lens) or not prompt_lens or min(prompt_lens) < 1 or min(output_lens) < 0:
        raise ValueError("bad lengths")
    return 1.0 - sum(prompt_lens) / (len(prompt_lens) * max(prompt_lens))      # wrong: outputs ignored
