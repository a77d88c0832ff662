"""`hark train`: train a keyword-spotting model on Speech Commands-layout folders."""
import argparse
import time
from pathlib import Path

from hark.cli import HarkError

HELP = """\
Trains a float Keras model and writes, in --out: model.keras, config.json (everything
needed to reproduce the run, including the feature normalisation), history.json and
history.png (training curves), metrics.json and confusion_float.png (dev test split).
Then run `hark export RUN_DIR` to get the int8 model blob for the device.

Data: any folder laid out like Speech Commands (<word>/<clip>.wav|.flac, optional
_background_noise_/, validation_list.txt, testing_list.txt). Words other than the ten
commands become _unknown_; _silence_ is cut from the background noise.
Scarce words (on, off, unknown words) are oversampled with augmentation; add synthetic
speech with --synth (from `hark synth`): real clips keep at least --real-share of each class.

Custom wake word from text only (--wake PHRASE): labels _silence_, _unknown_ and the
phrase's folder name (hey_hark). Positives come from the synthetic folder of the phrase,
negatives are every real word plus the synthetic unknown words; _unknown_ takes every
negative once per view, the wake word and _silence_ half as many each (--class-size
overrides). Synthetic clips are split 80/10/10 by voice for train/validation/test.

Wake word + commands (--wake PHRASE --commands yes,no,...): one model with the commands,
the phrase, _unknown_ and _silence_ for the wake+command grammar (a command counts only
just after the wake word); `hark export` stores that grammar in the blob. Classes are
balanced as for commands alone; only the phrase's synthetic clips are split by voice.

examples:
  hark train --data ../shared/data/speech_commands --out runs/kws
  hark train --data DATA --synth data/synth/commands data/synth/unknown --family dscnn
  hark train --data DATA --out runs/smoke --epochs 1 --max-per-word 10   # quick check
  hark synth --words "hey hark:600" --out data/synth/wake
  hark train --wake "hey hark" --synth data/synth/wake data/synth/unknown --data DATA \
      --width 32 --out runs/wake
  hark train --wake "hey hark" --commands yes,no,up,down,left,right,on,off,stop,go \
      --synth data/synth/commands data/synth/unknown data/synth/wake --data DATA --out runs/assistant
"""


def register(sub):
    p = sub.add_parser("train", help="train a model", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="real Speech Commands-layout folders")
    p.add_argument("--synth", nargs="*", default=[], help="synthetic folders from `hark synth`")
    p.add_argument("--out", default="runs/kws", help="run directory (default runs/kws)")
    p.add_argument("--family", default="tcn", choices=["tcn", "dscnn", "tiny_conv"],
                   help="tcn: hark's streaming temporal CNN (default); dscnn: MLPerf Tiny "
                        "reference; tiny_conv: TFLite Micro micro_speech")
    p.add_argument("--width", type=int, default=0,
                   help="tcn channels per layer (default 64, the shipped model's, which fits "
                        "the esp32-inmp441, esp32s3 and rp2040 budgets; wider needs a bigger board)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--average-epochs", type=int, default=0, metavar="N",
                   help="keep the mean of the last N epochs' weights (default 0: the epoch "
                        "with the best validation accuracy); measured at N = 10 on the "
                        "default's recipe: the same model within a few clips (README)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0, help="seeds data order, augmentation, weights")
    p.add_argument("--views", type=int, default=3, help="augmented copies per example")
    p.add_argument("--real-share", type=float, default=0.3,
                   help="minimum share of real clips in a class that has synthetic clips. "
                        "The shipped default uses 0.5 (make train-default): against 0.3, more "
                        "commands heard on two of three 1 h streams at as many or fewer false "
                        "accepts, and cross-validation level once on/off get their own "
                        "offsets (docs/accuracy.md, *The default since session 28*)")
    p.add_argument("--label-real-share", action="append", default=[], metavar="LABEL=F",
                   help="one class's own --real-share (repeat for more). Over the session-20 "
                        "default's recipe (0.3) at its offsets, _unknown_=0.5 is cross-validated "
                        "0.7 points under it and on=0.5 off=0.5 1.4 points (off), neither with "
                        "the whole share's stream gain (docs/accuracy.md)")
    p.add_argument("--synth-ratio", type=float, default=1.0,
                   help="fraction of the synthetic clips to use (0..1)")
    p.add_argument("--max-per-word", type=int, default=0, help="cap clips per word (smoke runs)")
    p.add_argument("--wake", default="", metavar="PHRASE",
                   help='train a wake-word model for PHRASE (e.g. "hey hark") from its '
                        "synthetic folder in --synth; all real words become _unknown_")
    p.add_argument("--commands", default="", metavar="WORDS",
                   help="with --wake: comma-separated command words (real --data folders) "
                        "that follow the wake word, e.g. yes,no,on,off")
    p.add_argument("--class-size", type=int, default=0,
                   help="examples per class per view (default: median real count; with "
                        "--wake half the negatives)")
    p.add_argument("--exclude-words", default="",
                   help="comma-separated real words to leave out entirely, e.g. on,off to "
                        "measure how far synthetic speech alone carries them")
    p.add_argument("--drop-engines", default="", metavar="ENGINES",
                   help="comma-separated TTS engines (voices.csv's engine column, e.g. "
                        "mbrola,kokoro) whose clips in the --synth folders are left out: "
                        "what one voice family adds, cross-validated (make crossval-voices)")
    p.add_argument("--shift-ms", type=float, default=100.0,
                   help="random time shift of training clips, +-ms (default 100); a streaming "
                        "detector sees each word at every position of its window, so a wider "
                        "shift (200-300) teaches it to fire wherever the word sits")
    p.add_argument("--unknown-weight", type=float, default=1.0,
                   help="_unknown_ examples per view in class sizes (default 1); a live stream "
                        "is mostly other speech, and 2-3 cuts false accepts")
    p.add_argument("--mic-prob", type=float, default=0.0,
                   help="chance of colouring an example with a random microphone response "
                        "(band limits, resonances; default 0): synthetic speech is studio-flat")
    p.add_argument("--speed-prob", type=float, default=0.0,
                   help="chance of playing an example 0.9-1.1 times as fast (tempo, pitch and "
                        "formants together; default 0): other speakers on the cheap")
    p.add_argument("--formant-prob", type=float, default=0.0,
                   help="chance of moving an example's formants by 0.82-1.2 with its pitch "
                        "and tempo kept (a vocal-tract-length warp; default 0): a speaker "
                        "with a longer or shorter vocal tract saying the same clip. At 0.5 on "
                        "the default's recipe: within the seed spread (docs/accuracy.md)")
    p.add_argument("--room-prob", type=float, default=0.0,
                   help="chance of playing an example in a simulated room, 1-3 m from the "
                        "microphone, RT60 0.2-0.7 s (image-source method; default 0): a board "
                        "across a room, where the clips were recorded at arm's length")
    p.add_argument("--time-masks", type=int, default=0, metavar="N",
                   help="SpecAugment time masking: N spans of up to 100 ms (5 hops) per "
                        "training example set to the features' mean (default 0: none)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="mixup: every epoch, each training example mixed with another (features "
                        "and labels, weight ~ Beta(ALPHA, ALPHA), the example's own >= 0.5; "
                        "default 0: none; at 0.3 more clips right, about as many commands "
                        "heard on streams, more seeds firing on DC offsets: docs/accuracy.md)")
    p.add_argument("--mixup-epochs", type=int, default=0, metavar="N",
                   help="with --mixup, mix only the first N epochs (default 0: every epoch): "
                        "the last ones, at a low learning rate, see whole examples again. At "
                        "30 of 40: sharper scores, but no more commands heard on the streams "
                        "at equal false accepts (docs/accuracy.md)")
    p.add_argument("--mixup-keep-silence", action="store_true",
                   help="with --mixup, leave _silence_ examples unmixed and out of other "
                        "examples' mixes. Measured: as many seeds fire on DC offsets with "
                        "noise, and fewer commands are heard on the streams (docs/accuracy.md)")
    p.add_argument("--onset-unknown", type=float, default=0.0, metavar="P",
                   help="share of _unknown_ examples that hold only a word's first 100-250 ms "
                        "at the window's end (any word, commands too; default 0): a streaming "
                        "model should not fire on an onset alone")
    p.add_argument("--tail-unknown", type=float, default=0.0, metavar="P",
                   help="share of _unknown_ examples that hold only a word's last 100-400 ms at "
                        "the window's start (a word leaving a streaming window; default 0). The "
                        "assistant uses 0.5; a commands-only model loses whole other words to "
                        "them, so raise --unknown-weight with it (3 and 0.333: docs/accuracy.md)")
    p.add_argument("--lead-in-prob", type=float, default=0.0, metavar="P",
                   help="chance that a word example (any label but _silence_) has the last "
                        "100-400 ms of another training word 100-600 ms before it, the label "
                        "kept (default 0): a command said right after the wake phrase reaches "
                        "the window like that, while training words are otherwise alone in it. "
                        "On the assistant, 0.5 hears more commands after the wake phrase on "
                        "every seed (docs/wake.md, \"A word before the command\")")
    p.add_argument("--dc-prob", type=float, default=0.1,
                   help="chance of a random DC offset (constant or a step, up to 90 %% of full "
                        "scale) on any example, speech included (default 0.1): real "
                        "microphones have offsets and the front end does not remove them")
    p.add_argument("--dc-silence-prob", type=float, default=0.3,
                   help="share of _silence_ examples on a DC offset or step of up to full scale, "
                        "with or without noise (default 0.3): without it, whether a model "
                        "fires on a DC step is luck of the seed; 0 and 0 train as before")
    p.add_argument("--fmax", type=float, default=0,
                   help="top of the mel filterbank in Hz (default 4000, as MLPerf Tiny KWS; "
                        "8000 keeps fricatives such as the f of \"off\")")
    p.add_argument("--n-mfcc", type=int, default=0,
                   help="cepstral coefficients per 20 ms frame, the model's input channels "
                        "(default 10, as MLPerf Tiny KWS; at most the 40 mel bands)")
    t = p.add_argument_group(
        "distillation from a pretrained speech teacher",
        "The teacher is Google's speech embedding (bundled by openwakeword==0.4.0, run with "
        "onnxruntime) with a small head trained here on the run's real training clips (and, "
        "with --wake and --commands, the wake phrase's synthetic clips). It labels every "
        "training clip (word parts of --tail-unknown stay _unknown_ by rule); the student "
        "learns from both labels (with --soft-weight "
        "0 the teacher only judges synthetic clips: --teacher-filter). Embeddings are "
        "cached in ~/.cache/hark/teacher ($HARK_CACHE), so a rerun with the same seed is fast. "
        "Or --teacher-runs: hark's own wider runs, whose mean logits label every augmented "
        "example (capacity that does not fit the board, passed on through the labels).")
    t.add_argument("--teacher", default="", choices=["", "oww-embedding"],
                   help="distil from this teacher (default: none)")
    t.add_argument("--temperature", type=float, default=2.0,
                   help="softening of the teacher's labels (default 2)")
    t.add_argument("--soft-weight", type=float, default=0.5,
                   help="share of the loss on the teacher's labels, 0..1 (default 0.5; 0: "
                        "the teacher only judges synthetic clips, see --teacher-filter)")
    t.add_argument("--teacher-extra", type=int, default=0, metavar="N",
                   help="N clips per view that only the teacher labels: overlapping word "
                        "pairs, words half out of the window, fragments in noise, "
                        "pitch/tempo-shifted words (default 0)")
    t.add_argument("--teacher-filter", type=float, default=0.0, metavar="P",
                   help="drop synthetic clips that the teacher gives less than P probability "
                        "of their own word (e.g. 0.3; default 0: keep all)")
    t.add_argument("--teacher-filter-labels", default="", metavar="L,...",
                   help="judge only the synthetic clips of these labels, e.g. on,off (the "
                        "others are all kept; default: every label)")
    t.add_argument("--teacher-correct", default="", choices=["", "all", "words"],
                   help="where the teacher's top class is not a clip's label (it hears many "
                        "'off' as 'up'), swap the two in its soft label: 'all' wherever, "
                        "'words' only where that top class is another word, not _unknown_ or "
                        "_silence_ (default: no correction)")
    t.add_argument("--teacher-runs", nargs="+", default=[], metavar="RUN",
                   help="distil instead from hark's own finished runs (mean of their logits), "
                        "e.g. wider models that do not fit the board: runs/w128_s0 runs/w128_s1. "
                        "With --cv-fold, `{fold}` in a path becomes the fold number; each run "
                        "must have the student's labels, features and fold")
    c = p.add_argument_group(
        "speaker-grouped cross-validation",
        "The dev test list holds one 'on', one 'off' and a few unknown words. With "
        "--cv-folds K, the scarce words' speakers are split into K folds by a hash of the "
        "speaker id; fold --cv-fold is tested and none of its speakers is trained on. "
        "`python -m hark.training.crossval` runs every fold and seed and sums the results.")
    c.add_argument("--cv-folds", type=int, default=0, metavar="K")
    c.add_argument("--cv-fold", type=int, default=0, metavar="I", help="0..K-1")
    m = p.add_argument_group(
        "embedding for enrolled words (issue 16)",
        "A metric-learning objective beside the classifier on the pooled features the blob marks "
        "as the embedding, so words the model has no class for (enrolled on the device) are told "
        "apart: each step also draws a prototypical episode of WAY words from every word of "
        "--data's train split, --synth and --embedding-synth, except the held-out words.")
    m.add_argument("--unseen-words", default="", metavar="WORDS",
                   help="ablation: drop these words from the labels and from every training "
                        "source (real, synthetic, episodes), so that enrolling a plentiful word "
                        "(several clips per speaker) measures a word the model never heard")
    m.add_argument("--embedding-loss", default="", choices=["", "proto"])
    m.add_argument("--embedding-weight", type=float, default=0.5, metavar="W",
                   help="weight of the episode loss beside the cross-entropy (default 0.5)")
    m.add_argument("--embedding-way", type=int, default=20, metavar="N",
                   help="words per episode (default 20)")
    m.add_argument("--embedding-shots", type=int, default=2, metavar="K",
                   help="clips averaged into a word's prototype; one more is the query (default 2)")
    m.add_argument("--embedding-synth", nargs="*", default=[], metavar="DIR",
                   help="more folders of words (e.g. other voices' `hark synth --unknown` pools) "
                        "used by the episodes only")
    m.add_argument("--embedding-holdout", default="", metavar="WORDS",
                   help="words never in an episode, so enrolling them measures unseen words "
                        "(default: bed,bird,cat,dog,happy,house,marvin,sheila,tree,wow, which "
                        "the enrollment benchmark measures, and backward,follow,forward,learn,"
                        "visual)")
    p.set_defaults(func=run)


# option: (check, what it must be); checked before TensorFlow starts (~10 s)
RANGES = {"epochs": (lambda v: v >= 1, ">= 1"),
          "average_epochs": (lambda v: v >= 0, ">= 0 (0: the best validation epoch)"),
          "batch_size": (lambda v: v >= 1, ">= 1"),
          "views": (lambda v: v >= 1, ">= 1"), "learning_rate": (lambda v: v > 0, "> 0"),
          "width": (lambda v: v >= 0, ">= 0 (0: the family default)"),
          "max_per_word": (lambda v: v >= 0, ">= 0"), "class_size": (lambda v: v >= 0, ">= 0"),
          "shift_ms": (lambda v: v >= 0, ">= 0"), "unknown_weight": (lambda v: v > 0, "> 0"),
          "mic_prob": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "speed_prob": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "formant_prob": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "room_prob": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "real_share": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "synth_ratio": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "time_masks": (lambda v: 0 <= v <= 4, "between 0 and 4"),
          "mixup": (lambda v: v >= 0, ">= 0 (0: none)"),
          "mixup_epochs": (lambda v: v >= 0, ">= 0 (0: every epoch)"),
          "onset_unknown": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "tail_unknown": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "lead_in_prob": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "dc_prob": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "dc_silence_prob": (lambda v: 0 <= v <= 1, "between 0 and 1"),
          "embedding_weight": (lambda v: v > 0, "> 0"), "embedding_way": (lambda v: v >= 2, ">= 2"),
          "embedding_shots": (lambda v: v >= 1, ">= 1")}


def label_real_shares(items) -> dict:
    """["on=0.5", ...] -> {"on": 0.5}."""
    from .export import label_thresholds
    return label_thresholds(items, "--label-real-share", "on=0.5")


def check_args(args):
    """Everything that can be checked without TensorFlow, so a typo costs no start-up time
    and leaves no run folder behind."""
    bad = [f"--{k.replace('_', '-')} {getattr(args, k)} must be {what}"
           for k, (ok, what) in RANGES.items() if not ok(getattr(args, k))]
    share_ok, share_range = RANGES["real_share"]     # a class's own share: the same bounds
    bad += [f"--label-real-share {label}={share:g} must be {share_range}"
            for label, share in label_real_shares(args.label_real_share).items()
            if not share_ok(share)]
    if bad:
        raise HarkError("; ".join(bad))
    dropped = command_list(args.drop_engines)
    if dropped:
        from hark.training.synth import ENGINES
        unknown = [e for e in dropped if e not in ENGINES]
        if unknown:
            raise HarkError(f"--drop-engines {','.join(unknown)}: not an engine of `hark "
                            f"synth`; choose from {', '.join(ENGINES)}")
        if not args.synth:
            raise HarkError("--drop-engines leaves out clips of --synth folders: give one")
    commands = command_list(args.commands)
    if commands and not args.wake:
        raise HarkError("--commands lists the words that follow a wake word: add --wake PHRASE "
                        "(a commands-only model has the ten standard commands)")
    if commands:
        from hark.training.synth import label_for
        if len(set(commands)) != len(commands):
            raise HarkError(f"--commands {args.commands}: a word is listed twice")
        if any(c.startswith("_") for c in commands):
            raise HarkError(f"--commands {args.commands}: _silence_ and _unknown_ are always "
                            "labels; list words only")
        if label_for(args.wake) in {label_for(c) for c in commands}:
            raise HarkError(f"--commands {args.commands}: the wake phrase cannot also be a command")
    if args.average_epochs > args.epochs:
        raise HarkError(f"--average-epochs {args.average_epochs} averages more epochs than "
                        f"--epochs {args.epochs} trains: at most {args.epochs}")
    if args.onset_unknown + args.tail_unknown > 1:
        raise HarkError("--onset-unknown and --tail-unknown share the _unknown_ examples: "
                        "together at most 1")
    if args.teacher and args.wake and not args.commands:
        raise HarkError("--teacher labels commands; a wake-word-only run has none to learn "
                        "from it (leave out --teacher, or add --commands)")
    if not 0.0 <= args.soft_weight <= 1.0 or args.temperature <= 0:
        raise HarkError("--soft-weight must be between 0 and 1 and --temperature above 0")
    if (args.teacher_extra or args.teacher_filter or args.teacher_correct) and not args.teacher:
        raise HarkError("--teacher-extra, --teacher-filter and --teacher-correct need --teacher")
    if not 0.0 <= args.teacher_filter < 1.0:
        raise HarkError("--teacher-filter is a probability in [0, 1)")
    filter_labels = command_list(args.teacher_filter_labels)
    if filter_labels and not args.teacher_filter:
        raise HarkError("--teacher-filter-labels chooses what --teacher-filter judges: add "
                        "--teacher-filter P")
    from hark.training.dataset import LABELS
    if set(filter_labels) - set(LABELS):
        raise HarkError(f"--teacher-filter-labels {args.teacher_filter_labels}: the teacher "
                        f"judges the command labels only: {', '.join(LABELS)}")
    if args.soft_weight == 0 and (args.teacher_extra or args.teacher_correct):
        raise HarkError("--soft-weight 0 leaves the teacher only --teacher-filter: its labels "
                        "(--teacher-extra, --teacher-correct) would be ignored; raise --soft-weight")
    if args.embedding_loss and (args.teacher or args.wake or args.mixup):
        raise HarkError("--embedding-loss trains beside the 12-class cross-entropy only: leave "
                        "out --teacher, --wake and --mixup")
    for option in ("mixup_keep_silence", "mixup_epochs"):
        if getattr(args, option) and not args.mixup:
            flag = "--" + option.replace("_", "-")
            raise HarkError(f"{flag} chooses how --mixup mixes: add --mixup ALPHA")
    if args.mixup_epochs > args.epochs:
        raise HarkError(f"--mixup-epochs {args.mixup_epochs} is more than --epochs "
                        f"{args.epochs} trains: at most {args.epochs}, or 0 for every epoch")
    if args.embedding_synth and not args.embedding_loss:
        raise HarkError("--embedding-synth feeds the episodes of --embedding-loss proto: add it")
    if args.cv_folds and not 0 <= args.cv_fold < args.cv_folds or args.cv_folds == 1:
        raise HarkError("--cv-folds K needs K >= 2 and --cv-fold between 0 and K-1")
    if args.teacher_runs:
        if args.teacher:
            raise HarkError("--teacher and --teacher-runs are two teachers: choose one")
        if args.soft_weight == 0:
            raise HarkError("--teacher-runs only give soft labels: --soft-weight 0 would "
                            "ignore them")
    if args.teacher:
        from hark.training.teacher import TeacherUnavailable, model_dir
        try:
            model_dir()
        except TeacherUnavailable as exc:
            raise HarkError(str(exc)) from exc
    for folder in args.data + args.synth + args.embedding_synth:
        if not Path(folder).is_dir():
            raise HarkError(f"{folder}: no such folder. Point --data/--synth at a Speech "
                            "Commands-layout folder (<word>/<clip>.wav) or run "
                            "`hark data fetch speech-commands`")


def command_list(text: str) -> list:
    return [w.strip() for w in text.split(",") if w.strip()]


def run(args):
    if args.wake and not args.synth:
        raise HarkError(f"--wake needs the synthetic clips of the phrase: `hark synth --words "
                        f"\"{args.wake}:600\" --out DIR`, then --synth DIR")
    check_args(args)
    from hark.training.dataset import DatasetError
    from hark.training.report import format_metrics
    from hark.training.train import TrainConfig, train

    cfg = TrainConfig(data=args.data, synth=args.synth, out=args.out, family=args.family,
                      width=args.width,
                      epochs=args.epochs, average_epochs=args.average_epochs,
                      batch_size=args.batch_size,
                      learning_rate=args.learning_rate, seed=args.seed, views=args.views,
                      real_share=args.real_share,
                      label_real_share=label_real_shares(args.label_real_share),
                      synth_ratio=args.synth_ratio,
                      max_per_word=args.max_per_word, class_size=args.class_size,
                      wake=args.wake.strip(), commands=command_list(args.commands),
                      shift_ms=args.shift_ms,
                      unknown_weight=args.unknown_weight, mic_prob=args.mic_prob,
                      speed_prob=args.speed_prob, formant_prob=args.formant_prob,
                      room_prob=args.room_prob,
                      time_masks=args.time_masks, mixup=args.mixup,
                      mixup_epochs=args.mixup_epochs,
                      mixup_keep_silence=args.mixup_keep_silence,
                      onset_unknown=args.onset_unknown,
                      tail_unknown=args.tail_unknown,
                      lead_in_prob=args.lead_in_prob,
                      dc_prob=args.dc_prob, dc_silence_prob=args.dc_silence_prob,
                      exclude_words=[w for w in args.exclude_words.split(",") if w],
                      drop_engines=command_list(args.drop_engines),
                      teacher=args.teacher, temperature=args.temperature,
                      soft_weight=args.soft_weight, teacher_extra=args.teacher_extra,
                      teacher_filter=args.teacher_filter, teacher_correct=args.teacher_correct,
                      teacher_filter_labels=command_list(args.teacher_filter_labels),
                      teacher_runs=[r.replace("{fold}", str(args.cv_fold))
                                    for r in args.teacher_runs],
                      cv_folds=args.cv_folds, cv_fold=args.cv_fold,
                      embedding_loss=args.embedding_loss, embedding_weight=args.embedding_weight,
                      embedding_way=args.embedding_way, embedding_shots=args.embedding_shots,
                      embedding_synth=args.embedding_synth,
                      unseen_words=command_list(args.unseen_words))
    if args.embedding_holdout:
        cfg.embedding_holdout = command_list(args.embedding_holdout)
    if args.fmax:
        if not 0 < args.fmax <= 8000:
            raise HarkError("--fmax must be in (0, 8000] Hz at 16 kHz audio")
        cfg.spec = dict(cfg.spec, fmax=args.fmax)
    if args.n_mfcc:
        if not 0 < args.n_mfcc <= cfg.spec["n_mels"]:
            raise HarkError(f"--n-mfcc must be in 1..{cfg.spec['n_mels']} (the mel bands)")
        cfg.spec = dict(cfg.spec, n_mfcc=args.n_mfcc)
    if cfg.teacher_runs:
        from hark.training.run_teacher import TeacherRunError, check_runs
        try:
            check_runs(cfg.teacher_runs, cfg.labels, cfg.spec, cfg.cv_folds, cfg.cv_fold)
        except TeacherRunError as exc:
            raise HarkError(str(exc)) from exc
    started = time.time() - 1      # file times may be rounded to the second
    try:
        metrics = train(cfg)
    except DatasetError as exc:
        raise HarkError(str(exc)) from exc
    print(format_metrics(metrics, f"float model on the dev test split ({args.out})"))
    out = Path(args.out)
    written = [p for p in sorted(out.iterdir()) if p.is_file() and p.stat().st_mtime >= started]
    print(f"wrote in {out}: " + ", ".join(f"{p.name} ({max(1, p.stat().st_size // 1024)} KB)"
                                          for p in written))
    print(f"next: hark export {args.out} --out {args.out}/model.hark")
