"""Guards around Whisper, so it never puts words in a caller's mouth: audio that cannot hold a
word (too short, too quiet, no voice by Silero VAD) never reaches the model; its text is checked
for repetition loops, echoes of the prompt and the phrases it invents on silence; Mandarin comes
out in Simplified characters. Long audio is cut into window-sized pieces here too."""

from __future__ import annotations

import re
import unicodedata
import zlib

from ivr.errors import AsrError

RATE = 16000
MIN_SECONDS = 0.2  # shorter than any word: a click or a breath
MIN_RMS = 10 ** (-60 / 20)  # -60 dBFS: digital silence or a dead line
VAD_GATE = 0.35  # Silero's best speech probability in the audio must reach this
LOOP_RATIO = 2.4  # gzip ratio above which Whisper is repeating itself (its own threshold)

# Phrases from the subtitles Whisper was trained on: they appear on silence and noise, never
# from a caller, so they are dropped whatever the scores say.
_NEVER_SPOKEN = ("字幕", "订阅", "訂閱", "点赞", "點贊", "打赏", "明镜", "amara.org", "subscribe",
                 "subtitles by", "captions by", "transcribed by", "yoyo television", "優優獨播",
                 "优优独播", "www.", ".com")
# Short phrases a caller might really say, but that Whisper also makes up on silence: dropped
# only when the no-speech probability is high-ish.
_SILENCE_PHRASES = {
    "thank you", "thanks", "thank you very much", "thanks for watching", "thank you for watching",
    "thank you for listening", "bye", "goodbye", "you", "oh", "so", "okay", "the end",
    "please like and subscribe", "谢谢", "谢谢观看", "谢谢大家", "感谢观看", "谢谢收看", "再见",
    "嗯", "好", "我们下期再见", "请不吝点赞订阅转发打赏支持明镜与点点栏目",
}
SILENCE_PHRASE_NO_SPEECH = 0.25  # above this, a silence phrase is taken for a hallucination

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


# --- audio ---------------------------------------------------------------------------------------

def as_float(audio):
    import numpy as np

    x = np.asarray(audio)
    if x.ndim != 1:
        raise AsrError(f"audio must be mono (one dimension), got shape {x.shape}", code="asr-bad-audio")
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    return x.astype(np.float32, copy=False)


def audio_gate(x) -> str:
    """Why the audio cannot hold a word ("too-short", "quiet"), or ""."""
    import numpy as np

    if len(x) < MIN_SECONDS * RATE:
        return "too-short"
    if float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) < MIN_RMS:
        return "quiet"
    return ""


def speech_prob(x) -> float:
    """Silero's highest speech probability over the audio: noise, hum and tones stay near 0.05,
    any word reaches 0.7 (measured), so it stops Whisper inventing sentences from noise."""
    import numpy as np
    from faster_whisper.vad import get_vad_model

    padded = np.pad(x, (0, -len(x) % 512))
    return float(np.max(get_vad_model()(padded))) if len(padded) else 0.0


def split(x, window: float) -> list:
    """Pieces of at most `window` seconds, cut at the quietest 20 ms of the last 2 s before each
    boundary so a word is rarely cut in half."""
    import numpy as np

    size, frame = int(window * RATE), RATE // 50
    search = min(2 * RATE, size // 2) // frame * frame
    pieces, start = [], 0
    while len(x) - start > size:
        lo, hi = start + size - search, start + size
        energy = np.square(x[lo:hi]).reshape(-1, frame).sum(axis=1)
        cut = lo + int(np.argmin(energy)) * frame + frame // 2
        pieces.append(x[start:cut])
        start = cut
    pieces.append(x[start:])
    return [p for p in pieces if len(p) >= MIN_SECONDS * RATE]


# --- text ----------------------------------------------------------------------------------------


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_loop(text: str) -> bool:
    return compression_ratio(text) > LOOP_RATIO


def bare(text: str) -> str:
    """Lower case, no punctuation nor spaces: for comparing phrases."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())


def is_hallucination(text: str, no_speech_prob: float) -> bool:
    low = text.lower()
    if any(marker in low for marker in _NEVER_SPOKEN):
        return True
    return no_speech_prob > SILENCE_PHRASE_NO_SPEECH and bare(text) in _SILENCE_BARE


def is_echo(text: str, preamble: str, hints: tuple[str, ...]) -> bool:
    """Whisper copying its initial prompt instead of hearing the caller. A piece of the fixed
    preamble is an echo; so is a stretch of the hint list longer than any one hint (a single
    hint is a fine answer: the caller said "claim status")."""
    said = bare(text)
    if not said:
        return False
    pre = bare(preamble)
    if pre and (len(said) >= 2 and said in pre or pre in said):
        return True
    joined = bare("".join(hints))
    longest = max((len(bare(h)) for h in hints), default=0)
    if said.isdigit():
        return False  # digits the caller read out may well appear in a digit slot's hints
    return bool(joined) and len(said) > longest and said in joined


def tidy(text: str, lang: str) -> str:
    """One line, single spaces; Mandarin in Simplified characters without spaces between them."""
    text = " ".join(text.split())
    if lang.startswith("zh"):
        text = to_simplified(text)
        text = re.sub(r"(?<=[\u3000-\u9fff\uff00-\uffef]) (?=[\u3000-\u9fff\uff00-\uffef])", "", text)
    return text


# Traditional -> Simplified for the characters Whisper most often emits in Traditional when it
# drifts (bank, card, service, claim vocabulary and the commonest words). Not a full converter:
# only unambiguous one-to-one pairs.
_T2S_PAIRS = (
    "丟丢 們们 個个 這这 來来 時时 會会 說说 對对 為为 爲为 國国 學学 後后 還还 開开 過过 關关 點点 "
    "現现 發发 髮发 問问 題题 動动 電电 話话 號号 碼码 帳账 賬账 戶户 銀银 錢钱 轉转 務务 詢询 賠赔 "
    "進进 聯联 謝谢 請请 幫帮 嗎吗 沒没 麼么 體体 帶带 從从 長长 樣样 見见 讓让 給给 認认 識识 處处 "
    "辦办 實实 報报 額额 險险 貸贷 單单 據据 證证 記记 錄录 鐘钟 間间 買买 賣卖 機机 視视 覺觉 應应 "
    "該该 經经 歷历 業业 費费 區区 東东 車车 門门 馬马 魚鱼 語语 雙双 兩两 萬万 億亿 幾几 無无 與与 "
    "專专 傳传 員员 華华 願愿 歡欢 愛爱 聽听 讀读 寫写 詞词 試试 驗验 連连 線线 網网 頁页 紙纸 結结 "
    "維维 護护 償偿 貨货 購购 積积 級级 憑凭 擇择 選选 項项 類类 裏里 裡里 齊齐 齡龄 師师 歲岁 設设 "
    "計计 劃划 統统 屬属 態态 壞坏 錯错 難难 離离 醫医 藥药 療疗 義义 財财 產产 遺遗 掛挂 凍冻 餘余 "
    "誤误 訊讯 確确 鑰钥 鎖锁 權权 親亲 曉晓 當当 彈弹 層层 邊边 頭头 興兴 紀纪 靜静 場场 節节 約约 "
    "習习 內内 兒儿 氣气 燈灯 飛飞 團团 園园 圖图 書书 畫画 廣广 樂乐 舊旧 亂乱 輸输 復复 複复 雜杂 "
    "滿满 標标 準准 張张 閱阅 導导 遠远 運运 達达 適适 遲迟 須须 鐵铁 銷销 隊队 際际 隨随 雖虽 響响 "
    "顧顾 顯显 飯饭 館馆 驚惊 黃黄 龍龙 歸归 僅仅 價价 儲储 優优 傷伤 債债 備备 嚴严 勞劳 匯汇 協协 "
    "參参 週周 營营 圍围 堅坚 塊块 壓压 夠够 婦妇 寶宝 將将 尋寻 幣币 廳厅 總总 戰战 換换 擔担 擊击 "
    "擴扩 敗败 數数 斷断 於于 暫暂 條条 極极 構构 樓楼 樹树 檢检 櫃柜 殺杀 況况 減减 測测 湯汤 溝沟 "
    "漢汉 濟济 煙烟 熱热 燒烧 爭争 獎奖 獨独 環环 畢毕 盜盗 盡尽 監监 盤盘 眾众 礎础 禮礼 種种 稱称 "
    "稅税 穩稳 窮穷 範范 簡简 簽签 紅红 純纯 組组 細细 終终 絕绝 綠绿 緊紧 編编 練练 縣县 績绩 繼继 "
    "續续 聞闻 聲声 職职 腦脑 脫脱 臨临 舉举 葉叶 蘇苏 衝冲 補补 裝装 製制 覽览 觀观 規规 訂订 討讨 "
    "訪访 許许 註注 評评 詳详 誠诚 誰谁 課课 調调 談谈 論论 譯译 議议 變变 負负 責责 貴贵 貼贴 貿贸 "
    "資资 賞赏 賴赖 趕赶 軍军 軟软 較较 載载 輕轻 輛辆 輪轮 農农 違违 遞递 遊游 鄉乡 釋释 針针 鏡镜 "
    "閉闭 閒闲 陳陈 階阶 雞鸡 靈灵 頂顶 順顺 預预 領领 顏颜 養养 駕驾 鬥斗 鮮鲜 鳳凤 歐欧 壽寿 術术 "
    "麵面 蘋苹 鄰邻 懷怀 憶忆 戲戏 擁拥 讚赞 貓猫 鳥鸟 訴诉 詐诈 騙骗"
)
_T2S = {pair[0]: pair[1] for pair in _T2S_PAIRS.split() if pair[0] != pair[1]}
_SILENCE_BARE = {bare(p) for p in _SILENCE_PHRASES}


def to_simplified(text: str) -> str:
    return "".join(_T2S.get(c, c) for c in text)
