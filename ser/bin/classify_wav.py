"""Classify audio files with a trained model: classify_wav.py --model-dir DIR a.wav ... (ser.bin.classify, which
is also installed as the ser-classify command, under its older name)."""

from ser.bin.classify import main

if __name__ == "__main__":
    main()
