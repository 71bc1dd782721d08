"""The variants of bench/mlm_throughput.py: each runs `total` optimizer steps of the same MLM model on the same
batch stream and returns (StepClock with marks[k] = end of step k, masked tokens per step, extras)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import StepClock, TensorRows, stack_collate  # noqa: E402
from bench.mlm_data import (  # noqa: E402
    BATCH,
    LR,
    MLM_PROB,
    SEED,
    SEQ,
    WEIGHT_DECAY,
    bert_config,
    our_model,
    stream_batch,
)


def run_hf_trainer(ctx: dict, total: int, workdir: Path):
    import datasets
    from transformers import (
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.trainer_callback import PrinterCallback

    clock, masked = StepClock(), []

    class Marks(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            clock.mark()

        def on_step_end(self, args, state, control, **kw):
            clock.mark()

    collator = DataCollatorForLanguageModeling(ctx["hf_tokenizer"], mlm_probability=MLM_PROB, seed=SEED)

    def collate(examples):
        batch = collator(examples)
        masked.append(int((batch["labels"] != -100).sum()))
        return batch

    rows = total * BATCH
    ds = datasets.Dataset.from_dict({k: v[:rows].tolist() for k, v in ctx["stream"].items()})
    torch.manual_seed(SEED)
    model = BertForMaskedLM(bert_config(ctx["tokenizer"].pad_token_id))
    args = TrainingArguments(
        output_dir=str(workdir / "hf"),
        per_device_train_batch_size=BATCH,
        max_steps=total,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=SEED,
        train_sampling_strategy="sequential",  # read the shared stream in order: same batches as b, c, d
    )
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collate, callbacks=[Marks()])
    trainer.remove_callback(PrinterCallback)  # it would print the end-of-training metrics dict
    t0 = time.perf_counter()
    trainer.train()
    extra = {
        "optimizer": f"AdamW (HF default optim='{getattr(args.optim, 'value', args.optim)}')",
        "attn_implementation": model.config._attn_implementation,
        "train_call_s": time.perf_counter() - t0,
    }
    return clock, masked, extra


def run_hf_loop(ctx: dict, total: int, workdir: Path):
    from transformers import BertForMaskedLM, DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(ctx["hf_tokenizer"], mlm_probability=MLM_PROB, seed=SEED)
    collator.create_rng()
    torch.manual_seed(SEED)
    model = BertForMaskedLM(bert_config(ctx["tokenizer"].pad_token_id))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    clock, masked = StepClock(), []
    clock.mark()
    for step in range(total):
        batch = stream_batch(ctx, step)
        ids, labels = collator.torch_mask_tokens(batch["input_ids"].clone(), batch["special_tokens_mask"])
        loss = model(input_ids=ids, attention_mask=batch["attention_mask"], labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.mark()
        masked.append(int((labels != -100).sum()))
    return (
        clock,
        masked,
        {
            "optimizer": "AdamW (torch default: for-loop on CPU)",
            "attn_implementation": model.config._attn_implementation,
        },
    )


def run_ours_loop(ctx: dict, total: int, workdir: Path):
    model = our_model(ctx)
    model.set_generator(torch.Generator().manual_seed(SEED))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    clock, masked = StepClock(), []
    clock.mark()
    for step in range(total):
        out = model(stream_batch(ctx, step))
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.mark()
        masked.append(int(out["mlm/masked_tokens"]))
    # what one collapse-monitor call costs (the trainer runs it every monitor_every steps)
    from ssl_modal.core.monitors import collapse_stats

    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        collapse_stats(model.embed(stream_batch(ctx, 0)))
        times.append(time.perf_counter() - t0)
    return clock, masked, {"optimizer": "AdamW (torch default: for-loop on CPU)", "monitor_call_s": min(times)}


def run_ours_trainer(ctx: dict, total: int, workdir: Path):
    from ssl_modal import TrainConfig, Trainer

    clock, sums = StepClock(), []

    def collate(items):
        clock.mark()  # call j starts step j, right after step j-1 ended: marks[k] = end of step k
        batch = stack_collate(items)
        sums.append(int(batch["input_ids"].sum()))
        return batch

    model = our_model(ctx)
    cfg = TrainConfig(
        output_dir=str(workdir / "ours"),
        max_steps=total + 1,
        batch_size=BATCH,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        seed=SEED,
        log_every=10,
        checkpoint_every=10**9,
        progress=False,
        tensorboard=False,
        device="cpu",
        resume=False,
        num_workers=0,
    )
    t0 = time.perf_counter()
    result = Trainer(cfg).fit(model, TensorRows(ctx["data"]), collate)
    t1 = time.perf_counter()
    expected = [int(stream_batch(ctx, s)["input_ids"].sum()) for s in range(len(sums))]
    # masks: same generator seed and draws as c, so c's per-step counts stand for d's
    return (
        clock,
        [],
        {
            "optimizer": "AdamW (torch default: for-loop on CPU), 2 param groups",
            "same_batches_as_stream": sums == expected,
            "fit_call_s": t1 - t0,
            "last_step_and_final_save_s": t1 - clock.marks[-1],
            "final_loss": result.history[-1].get("loss") if result.history else None,
        },
    )


def run_ours_variable(ctx: dict, total: int, workdir: Path, packed: bool = False):
    """As c, with batches padded to their longest text (e) or packed rows (p); real tokens per step logged."""
    model = our_model(ctx)
    model.set_generator(torch.Generator().manual_seed(SEED))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    clock, masked, real = StepClock(), [], []
    clock.mark()
    for step in range(total):
        if packed:
            batch = {k: v[step * BATCH : (step + 1) * BATCH] for k, v in ctx["packed"].items()}
        else:
            batch = stream_batch(ctx, step)
            longest = int(batch["attention_mask"].sum(1).max())
            batch = {k: v[:, :longest] for k, v in batch.items()}
        out = model(batch)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.mark()
        masked.append(int(out["mlm/masked_tokens"]))
        real.append(int(batch["attention_mask"].sum()))
    return (
        clock,
        masked,
        {
            "optimizer": "AdamW (torch default: for-loop on CPU)",
            "real_tokens_per_step": real,
            "positions_per_step": [BATCH * SEQ] * total if packed else None,
        },
    )


RUNNERS = {
    "a": run_hf_trainer,
    "b": run_hf_loop,
    "c": run_ours_loop,
    "d": run_ours_trainer,
    "e": run_ours_variable,
    "p": lambda ctx, total, workdir: run_ours_variable(ctx, total, workdir, True),
}
