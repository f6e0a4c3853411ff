/** Accounts (backend/users/router.py): the admin's user management and everyone's own password. */
import { json, request, send, setToken } from "./client";
import type { Schema, User } from "./types";

export const listUsers = () => json<User[]>("/api/users");

export const createUser = (body: Schema<"UserCreate">) =>
  json<User>("/api/users", send("POST", body));

/** An admin sets another user's password; the server revokes that user's tokens. */
export async function resetPassword(userId: number, newPassword: string): Promise<void> {
  await request(`/api/users/${userId}/password`, send("POST", { new_password: newPassword } satisfies Schema<"PasswordReset">));
}

export const setActive = (userId: number, isActive: boolean) =>
  json<User>(`/api/users/${userId}`, send("PATCH", { is_active: isActive } satisfies Schema<"UserUpdate">));

/** Changes the caller's password. The change revokes every earlier token, this session's included,
 * so the fresh token of the answer replaces it. */
export async function changeOwnPassword(currentPassword: string, newPassword: string): Promise<void> {
  const out = await json<Schema<"Token">>(
    "/api/users/me/password",
    send("POST", { current_password: currentPassword, new_password: newPassword } satisfies Schema<"PasswordChange">),
  );
  setToken(out.access_token);
}

/** Logs the caller out everywhere, this browser included. */
export async function revokeOwnTokens(): Promise<void> {
  await request("/api/users/me/revoke-tokens", send("POST"));
  setToken(null);
}
