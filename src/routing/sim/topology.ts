// Graph shapes for the simulator, as edge lists over node indices 0..n-1.

export type Edge = [number, number];

export function line(n: number): Edge[] {
  const edges: Edge[] = [];
  for (let i = 1; i < n; i++) edges.push([i - 1, i]);
  return edges;
}

export function ring(n: number): Edge[] {
  const edges = line(n);
  if (n > 2) edges.push([n - 1, 0]);
  return edges;
}

/** Node 0 is the hub. */
export function star(n: number): Edge[] {
  const edges: Edge[] = [];
  for (let i = 1; i < n; i++) edges.push([0, i]);
  return edges;
}

export function grid(width: number, height: number): Edge[] {
  const edges: Edge[] = [];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (x + 1 < width) edges.push([i, i + 1]);
      if (y + 1 < height) edges.push([i, i + width]);
    }
  }
  return edges;
}

/**
 * Barabási–Albert preferential attachment: start from a clique of m+1 nodes, then each new node
 * links to m distinct existing nodes chosen with probability proportional to their degree.
 */
export function barabasiAlbert(n: number, m: number, random: () => number): Edge[] {
  const edges: Edge[] = [];
  const ends: number[] = []; // every edge endpoint once: sampling from it is degree-proportional
  const seed = Math.min(n, m + 1);
  for (let i = 0; i < seed; i++) {
    for (let j = 0; j < i; j++) {
      edges.push([j, i]);
      ends.push(i, j);
    }
  }
  for (let i = seed; i < n; i++) {
    const chosen = new Set<number>();
    while (chosen.size < m) chosen.add(ends[Math.floor(random() * ends.length)]);
    for (const j of chosen) {
      edges.push([j, i]);
      ends.push(i, j);
    }
  }
  return edges;
}
