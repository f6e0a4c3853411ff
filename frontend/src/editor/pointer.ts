/**
 * The pointer on the editor's ui canvas, turned into gestures, all in ORIGINAL image pixels: a
 * click (a point: left button foreground, right button or Alt background), a drag past a few pixels
 * (a box prompt, where boxes are on; else it stays a click where the button went down), and a brush
 * or eraser stroke. What a gesture does is the editor's business (editor.ts).
 */
import type { Point } from "../api/types";
import type { Stroke } from "./store";
import type { EditorView } from "./view";

const DRAG_THRESHOLD_PX = 5;

export type Tool = "points" | "brush" | "eraser";
/** [x0, y0, x1, y1] in original pixels. */
export type Box = [number, number, number, number];

export interface GestureHandlers {
  /** The tool a press starts with and the brush radius, or null while presses are ignored. */
  press(): { tool: Tool; radius: number } | null;
  click(point: Point): void;
  box(box: Box): void;
  /** A stroke ended (the one being drawn is `Gestures.stroke` meanwhile). */
  stroke(stroke: Stroke): void;
  /** The pointer pressed or moved; `idle`: no press in progress (a hover). */
  moved(idle: boolean): void;
  /** The pointer left the image. */
  left(): void;
}

export class Gestures {
  /** The pointer over the image, original pixels; null when it is outside. */
  cursor: [number, number] | null = null;
  /** The stroke being drawn, for live feedback. */
  stroke: Stroke | null = null;
  private drag: { x: number; y: number; clientX: number; clientY: number; label: 0 | 1; moved: boolean } | null = null;
  private readonly disposers: (() => void)[] = [];

  constructor(
    private readonly view: EditorView,
    private readonly handlers: GestureHandlers,
    private readonly boxes: boolean,
  ) {
    this.listen("contextmenu", (e) => e.preventDefault());
    this.listen("pointerdown", (e) => this.down(e));
    this.listen("pointermove", (e) => this.move(e));
    this.listen("pointerup", (e) => this.up(e));
    this.listen("pointerleave", () => {
      this.cursor = null;
      this.handlers.left();
    });
  }

  /** The box being dragged, while it is one. */
  get dragBox(): Box | null {
    return this.drag?.moved && this.cursor ? boxFrom(this.drag.x, this.drag.y, ...this.cursor) : null;
  }

  dispose(): void {
    for (const dispose of this.disposers) dispose();
  }

  private listen(type: string, handler: (e: PointerEvent) => void): void {
    const ui = this.view.ui;
    const listener = (e: Event) => handler(e as PointerEvent);
    ui.addEventListener(type, listener);
    this.disposers.push(() => ui.removeEventListener(type, listener));
  }

  private down(e: PointerEvent): void {
    const press = this.handlers.press();
    if (press === null) return;
    e.preventDefault();
    this.view.ui.setPointerCapture(e.pointerId);
    const [x, y] = this.view.toImage(e.clientX, e.clientY);
    if (press.tool === "points") {
      this.drag = { x, y, clientX: e.clientX, clientY: e.clientY, label: e.button === 2 || e.altKey ? 0 : 1, moved: false };
    } else {
      this.stroke = { mode: press.tool, radius: press.radius, points: [[x, y]] };
    }
    this.handlers.moved(false);
  }

  private move(e: PointerEvent): void {
    this.cursor = this.view.toImage(e.clientX, e.clientY);
    const drag = this.drag;
    if (this.boxes && drag && !drag.moved && Math.hypot(e.clientX - drag.clientX, e.clientY - drag.clientY) > DRAG_THRESHOLD_PX) {
      drag.moved = true;
    }
    if (this.stroke) this.stroke.points.push(this.cursor);
    this.handlers.moved(drag === null && this.stroke === null);
  }

  private up(e: PointerEvent): void {
    const [x, y] = this.view.toImage(e.clientX, e.clientY);
    const drag = this.drag;
    const stroke = this.stroke;
    this.drag = null;
    this.stroke = null;
    if (drag?.moved) this.handlers.box(boxFrom(drag.x, drag.y, x, y));
    else if (drag) this.handlers.click({ x: drag.x, y: drag.y, label: drag.label });
    else if (stroke) this.handlers.stroke(stroke);
  }
}

function boxFrom(x0: number, y0: number, x1: number, y1: number): Box {
  return [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
}
